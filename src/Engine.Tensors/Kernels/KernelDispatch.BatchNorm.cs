using Engine.Runtime.Kernels;
using Engine.Tensors.AutoDiff;

namespace Engine.Tensors.Kernels;

/// <summary>BatchNorm2d in training mode on a device, fused (kernels/Norm/BatchNormKernels.cs).</summary>
internal static partial class KernelDispatch
{
    /// <summary>
    /// Batch-statistics BatchNorm2d of a float32 [N, C, H, W] <paramref name="x"/> on a device:
    /// returns y and the batch mean and biased variance ([C], for the running statistics; no graph).
    /// Records the fused backward (two kernels) for x, <paramref name="weight"/> and <paramref name="bias"/>;
    /// under create_graph the backward is the same formula in differentiable tensor ops, with the
    /// statistics recomputed from x, so higher derivatives flow through them.
    /// </summary>
    public static (Tensor Y, Tensor Mean, Tensor Var) BatchNorm2dTrain(Tensor x, Tensor? weight, Tensor? bias, double eps)
    {
        const string op = "batch_norm2d";
        RequireFloat32(op, x);
        if (weight is not null) { CheckSameDevice(op, x, weight); RequireFloat32(op, weight); }
        if (bias is not null) { CheckSameDevice(op, x, bias); RequireFloat32(op, bias); }
        long n = x.Shape[0], c = x.Shape[1], hw = x.Shape[2] * x.Shape[3];
        int count = Count32(op, x.NumEl, x.Shape);
        var acc = Accelerator(x);
        var mean = Output([c], x, op);
        var variance = Output([c], x, op);
        using var invStd = Output([c], x, op);
        using var w = weight is null ? Tensor.Ones([c], DType.Float32, x.Device) : weight.Detach();
        var y = Output(x.ShapeArray(), x, op);
        using (Tensor.NoGrad())
        using (var xc = x.Contiguous())
        using (var wc = w.Contiguous())
        using (var b = bias is null ? Tensor.Zeros([c], DType.Float32, x.Device) : bias.Contiguous())
        {
            BatchNormKernels.Launch.Stats(acc, (int)c, ReductionGroup(n * hw), Elements(xc), Whole(mean), Whole(variance), Whole(invStd), (int)n, (int)c, (int)hw, (float)eps);
            if (count > 0)
                BatchNormKernels.Launch.Forward(acc, Groups(count, BatchNormKernels.GroupSize), BatchNormKernels.GroupSize,
                    Elements(xc), Whole(mean), Whole(invStd), Elements(wc), Elements(b), Whole(y), (int)c, (int)hw, count);
        }
        Tensor[] inputs = weight is null ? [x] : bias is null ? [x, weight] : [x, weight, bias];
        // Saved: x (its graph kept: create_graph differentiates through it), the statistics and the weight.
        Tensor[] saved = weight is null ? [x, mean, invStd, w] : [x, mean, invStd, weight];
        Graph.Record(y, op, inputs, saved, (g, s) =>
        {
            var (dx, dw, db) = GradMode.IsEnabled ? BatchNormBackwardComposite(g, s[0], s[3], eps) : BatchNormBackwardFused(g, s[0], s[1], s[2], s[3]);
            if (weight is null) { dw.Dispose(); db.Dispose(); return [dx]; }
            if (bias is null) { db.Dispose(); return [dx, dw]; }
            return [dx, dw, db];
        });
        return (y, mean, variance);
    }

    private static int ReductionGroup(long length)
        => (int)Math.Clamp(System.Numerics.BitOperations.RoundUpToPowerOf2((ulong)Math.Max(length, 1)), 32UL, (ulong)BatchNormKernels.MaxGroup);

    /// <summary>The fused backward: Σg and Σg·x̂ per channel, then dx in one pass (not differentiable).</summary>
    private static (Tensor Dx, Tensor Dw, Tensor Db) BatchNormBackwardFused(Tensor g, Tensor x, Tensor mean, Tensor invStd, Tensor weight)
    {
        const string op = "batch_norm2d backward";
        long n = x.Shape[0], c = x.Shape[1], hw = x.Shape[2] * x.Shape[3];
        int count = (int)x.NumEl;
        var acc = Accelerator(x);
        using var _ = Tensor.NoGrad();
        using var gc = g.Contiguous();
        using var xc = x.Contiguous();
        using var wc = weight.Contiguous();
        var sumG = Output([c], x, op);
        var sumGX = Output([c], x, op);
        BatchNormKernels.Launch.BackwardReduce(acc, (int)c, ReductionGroup(n * hw), Elements(gc), Elements(xc), Elements(mean), Elements(invStd),
            Whole(sumG), Whole(sumGX), (int)n, (int)c, (int)hw);
        var dx = Output(x.ShapeArray(), x, op);
        if (count > 0)
            BatchNormKernels.Launch.BackwardInput(acc, Groups(count, BatchNormKernels.GroupSize), BatchNormKernels.GroupSize,
                Elements(gc), Elements(xc), Elements(mean), Elements(invStd), Elements(wc), Whole(sumG), Whole(sumGX), Whole(dx),
                (int)c, (int)hw, count, (float)(1.0 / (n * hw)));
        return (dx, sumGX, sumG);
    }

    /// <summary>The same backward in differentiable tensor ops (create_graph), statistics recomputed from x.</summary>
    private static (Tensor Dx, Tensor Dw, Tensor Db) BatchNormBackwardComposite(Tensor g, Tensor x, Tensor weight, double eps)
    {
        int[] dims = [0, 2, 3];
        long c = x.Shape[1];
        using var mean = x.Mean(dims, keepDim: true);
        using var variance = x.Var(dims, keepDim: true, correction: 0);
        using var veps = variance.Add(eps);
        using var invStd = veps.Rsqrt();
        using var centered = x.Sub(mean);
        using var xhat = centered.Mul(invStd);
        using var w = weight.View(1, c, 1, 1);
        using var gxhat = g.Mul(xhat);
        using var meanG = g.Mean(dims, keepDim: true);
        using var meanGX = gxhat.Mean(dims, keepDim: true);
        using var corr = xhat.Mul(meanGX);
        using var d0 = g.Sub(meanG);
        using var d1 = d0.Sub(corr);
        using var scale = invStd.Mul(w);
        return (d1.Mul(scale), gxhat.Sum(dims), g.Sum(dims));
    }
}
