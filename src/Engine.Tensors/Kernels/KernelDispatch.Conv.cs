using Engine.Runtime.Kernels;
using Engine.Tensors.AutoDiff;

namespace Engine.Tensors.Kernels;

/// <summary>
/// The device versions of Unfold (im2col), Fold (col2im) and MaxPool2d (kernels/Conv, kernels/Pool).
/// Each validates its arguments as the CPU op does, runs the kernel on the input's device, and
/// records the same backward as the CPU op (Fold ↔ Unfold; max-pool: a scatter-add at the saved
/// indices), so Conv2d — Unfold, matmul, bias add — trains on a device with no other change.
/// </summary>
internal static partial class KernelDispatch
{
    /// <summary>The kernels' by-value geometry for <paramref name="planes"/> planes of h×w and an oh×ow output.</summary>
    private static ConvLayout ConvLayoutOf(ConvGeometry geo, long planes, long h, long w, long oh, long ow) => new()
    {
        Planes = (int)planes, H = (int)h, W = (int)w, OH = (int)oh, OW = (int)ow,
        KH = geo.KH, KW = geo.KW, SH = geo.SH, SW = geo.SW, PH = geo.PH, PW = geo.PW, DH = geo.DH, DW = geo.DW,
    };

    /// <summary>Element count of a launch, refused past the kernels' 32-bit indexing.</summary>
    private static int Count32(string op, long count, ReadOnlySpan<long> shape)
    {
        if (count > int.MaxValue)
            throw new ArgumentException($"{op}: {count} elements (shape {ShapeUtil.Format(shape)}) exceed the 32-bit indexing of the device kernels; split the batch.");
        return (int)count;
    }

    private static int Groups(long count, int groupSize) => checked((int)((count + groupSize - 1) / groupSize));

    /// <summary>Tensor.Unfold on a device (float32); records Fold as its backward.</summary>
    public static Tensor Unfold(Tensor x, (int H, int W) kernelSize, (int H, int W)? stride, (int H, int W)? padding, (int H, int W)? dilation)
    {
        const string op = "unfold";
        var geo = ConvGeometry.Create(op, kernelSize, stride, padding, dilation);
        if (x.Rank != 4 || !x.DType.IsFloatingPoint())
            throw new ArgumentException($"{op}: expects a 4-D [N, C, H, W] float tensor, got {x.DType.Name()} {ShapeUtil.Format(x.Shape)}.");
        RequireFloat32(op, x);
        long n = x.Shape[0], c = x.Shape[1], h = x.Shape[2], w = x.Shape[3];
        var (oh, ow) = geo.OutputSize(op, h, w);
        long kk = (long)geo.KH * geo.KW;
        long[] shape = [n, c * kk, oh * ow];
        int count = Count32(op, ShapeUtil.NumEl(shape), shape);
        Count32(op, x.NumEl, x.Shape);
        var y = Output(shape, x, op);
        if (count > 0)
        {
            using var _ = Tensor.NoGrad();
            using var xc = x.Contiguous();
            ConvKernels.Launch.Im2Col(Accelerator(x), Groups(count, ConvKernels.GroupSize), ConvKernels.GroupSize,
                Elements(xc), Whole(y), ConvLayoutOf(geo, n * c, h, w, oh, ow), count);
        }
        return Graph.Record(y, op, x, g => g.Fold((h, w), kernelSize, stride, padding, dilation));
    }

    /// <summary>Tensor.Fold on a device (float32); records Unfold as its backward.</summary>
    public static Tensor Fold(Tensor cols, (long H, long W) outputSize, (int H, int W) kernelSize, (int H, int W)? stride, (int H, int W)? padding, (int H, int W)? dilation)
    {
        const string op = "fold";
        var geo = ConvGeometry.Create(op, kernelSize, stride, padding, dilation);
        if (cols.Rank != 3 || !cols.DType.IsFloatingPoint())
            throw new ArgumentException($"{op}: expects a 3-D [N, C·kH·kW, L] float tensor, got {cols.DType.Name()} {ShapeUtil.Format(cols.Shape)}.");
        RequireFloat32(op, cols);
        var (h, w) = outputSize;
        if (h < 1 || w < 1) throw new ArgumentException($"{op}: output size must be positive, got ({h}, {w}).");
        long kk = (long)geo.KH * geo.KW;
        var (oh, ow) = geo.OutputSize(op, h, w);
        if (cols.Shape[1] % kk != 0 || cols.Shape[2] != oh * ow)
            throw new ArgumentException(
                $"{op}: input of shape {ShapeUtil.Format(cols.Shape)} does not fit kernel ({geo.KH}, {geo.KW}) and output size ({h}, {w}): " +
                $"dim 1 must be a multiple of {kk} and dim 2 must be {oh}·{ow} = {oh * ow}.");
        long n = cols.Shape[0], c = cols.Shape[1] / kk;
        long[] shape = [n, c, h, w];
        int count = Count32(op, ShapeUtil.NumEl(shape), shape);
        Count32(op, cols.NumEl, cols.Shape);
        var y = Output(shape, cols, op);
        if (count > 0)
        {
            using var _ = Tensor.NoGrad();
            using var cc = cols.Contiguous();
            ConvKernels.Launch.Col2Im(Accelerator(cols), Groups(count, ConvKernels.GroupSize), ConvKernels.GroupSize,
                Elements(cc), Whole(y), ConvLayoutOf(geo, n * c, h, w, oh, ow), count);
        }
        return Graph.Record(y, op, cols, g => g.Unfold(kernelSize, stride, padding, dilation));
    }

    /// <summary>
    /// Tensor.MaxPool2dWithIndices on a device: values (float32) and int64 indices h·W + w; records
    /// the scatter-add of g at the indices (validated by construction, so not re-checked on the host).
    /// </summary>
    public static (Tensor Values, Tensor Indices) MaxPool2dWithIndices(Tensor x, (int H, int W) kernelSize, (int H, int W)? stride, (int H, int W)? padding, (int H, int W)? dilation)
    {
        const string op = "max_pool2d";
        var geo = Tensor.PoolGeometry(op, kernelSize, stride, padding, dilation);
        if (x.Rank != 4 || !x.DType.IsFloatingPoint())
            throw new ArgumentException($"{op}: expects a 4-D [N, C, H, W] float tensor, got {x.DType.Name()} {ShapeUtil.Format(x.Shape)}.");
        RequireFloat32(op, x);
        long n = x.Shape[0], c = x.Shape[1], h = x.Shape[2], w = x.Shape[3];
        var (oh, ow) = geo.OutputSize(op, h, w);
        long[] shape = [n, c, oh, ow];
        int count = Count32(op, ShapeUtil.NumEl(shape), shape);
        Count32(op, x.NumEl, x.Shape);
        var y = Output(shape, x, op);
        var idx = Tensor.Allocate(shape, DType.Int64, zero: false, op, x.Device);
        if (count > 0)
        {
            using var _ = Tensor.NoGrad();
            using var xc = x.Contiguous();
            PoolKernels.Launch.MaxPool2d(Accelerator(x), Groups(count, PoolKernels.GroupSize), PoolKernels.GroupSize,
                Elements(xc), Whole(y), idx.Storage.Buffer.View<long>(), ConvLayoutOf(geo, n * c, h, w, oh, ow), count);
        }
        Graph.Record(y, op, [x], [idx], (g, s) =>
        {
            using var zeros = Tensor.Zeros([n, c, h * w], g.DType, g.Device);
            using var flatIdx = s[0].View(n, c, oh * ow);
            using var flatG = g.Reshape(n, c, oh * ow);
            using var scattered = ScatterAdd(zeros, 2, flatIdx, flatG, indicesValid: true);
            return [scattered.View(n, c, h, w)];
        });
        return (y, idx);
    }
}

/// <summary>
/// conv2d on a device by implicit GEMM (kernels/Conv/ImplicitGemmKernels.cs): forward, backward-data and
/// backward-weight are recorded ops, each one's gradients again one of the three (as the CPU op records
/// them in Ops/Conv.cs), so gradients of any order run on the device; the bias gradient is a sum of g.
/// <para>
/// Handles every float32 conv2d (any stride, padding, dilation, groups, bias, batch, strided input and output
/// gradient) whose sizes fit the kernels' 32-bit indexing (<see cref="ImplicitGemmPlan.Fits"/>); depthwise
/// convolutions (one input channel per group, Cpu.ConvKernels.Shape.IsDepthwise) take the direct kernels of
/// kernels/Conv/DepthwiseConvKernels.cs instead (a 1-row GEMM would idle the tile). Otherwise
/// (<see cref="ImplicitGemmConv2d"/> returns null) Tensor.Conv2d falls back to Unfold (Im2Col) + MatMul + bias,
/// which also reports mixed devices and non-float32 dtypes with its own errors. Setting the environment
/// variable <c>ENGINE_CONV=im2col</c> selects that path for every device convolution (to compare the two).
/// </para>
/// </summary>
internal static partial class KernelDispatch
{
    /// <summary>Whether device conv2d uses the implicit-GEMM kernels (the default) or Unfold + MatMul (ENGINE_CONV=im2col).</summary>
    internal static readonly bool ImplicitGemmConvEnabled =
        !string.Equals(Environment.GetEnvironmentVariable("ENGINE_CONV"), "im2col", StringComparison.OrdinalIgnoreCase);

    /// <summary>
    /// Tensor.Conv2d on a device by implicit GEMM, or null when this path does not take the case (see the class
    /// remarks); arguments already validated by Tensor.Conv2d.
    /// </summary>
    public static Tensor? ImplicitGemmConv2d(Tensor x, Tensor w, Tensor? b, (int H, int W)? stride, (int H, int W)? padding, (int H, int W)? dilation, int groups)
    {
        const string op = "conv2d";
        if (!ImplicitGemmConvEnabled) return null;
        if (x.DType != DType.Float32 || w.DType != DType.Float32 || x.Device != w.Device || (b is not null && b.Device != x.Device)) return null;
        var s = ConvShapeOf(op, x, w, stride, padding, dilation, groups);
        if (!ImplicitGemmPlan.Fits(s)) return null;
        return ConvForwardOp(x, w, b, s);
    }

    /// <summary>The CPU kernels' shape record of conv2d(x, w) (sizes, window, groups).</summary>
    internal static Cpu.ConvKernels.Shape ConvShapeOf(string op, Tensor x, Tensor w, (int H, int W)? stride, (int H, int W)? padding, (int H, int W)? dilation, int groups)
    {
        var geo = ConvGeometry.Create(op, ((int)w.Shape[2], (int)w.Shape[3]), stride, padding, dilation);
        var (oh, ow) = geo.OutputSize(op, x.Shape[2], x.Shape[3]);
        return new Cpu.ConvKernels.Shape(x.Shape[0], x.Shape[1], x.Shape[2], x.Shape[3], w.Shape[0], oh, ow, groups, geo);
    }

    /// <summary>A strided operand as the kernels read it: itself when its reach fits int indexing, else a contiguous copy.</summary>
    private static Tensor ConvOperand(Tensor t) => ImplicitGemmPlan.ReachFits(t) ? t.Alias() : t.Contiguous();

    /// <summary>A contiguous weight's elements as a view; an empty weight (never read) gives <paramref name="output"/>'s storage instead.</summary>
    private static ArrayView<float> WeightView(Tensor wc, Tensor output) => wc.NumEl == 0 ? Whole(output) : Elements(wc);

    /// <summary>The recorded device conv2d forward y = conv2d(x, w) + b (shapes validated, <see cref="ImplicitGemmPlan.Fits"/> true).</summary>
    internal static Tensor ConvForwardOp(Tensor x, Tensor w, Tensor? b, Cpu.ConvKernels.Shape s, bool depthwiseKernels = true)
    {
        const string op = "conv2d";
        var y = Output([s.N, s.Cout, s.OH, s.OW], x, op);
        using (Tensor.NoGrad())
        using (var xo = ConvOperand(x))
        using (var wc = w.Contiguous())
        using (var bo = b is null ? null : ConvOperand(b))
        {
            var p = ImplicitGemmPlan.Create(s, xo, null, bo);
            var grid = ImplicitGemmPlan.ForwardGrid(p);
            int count = (int)y.NumEl;
            if (depthwiseKernels && s.IsDepthwise)
            {
                if (count > 0)
                    DepthwiseConvKernels.Launch.DepthwiseForward(Accelerator(x), Groups(count, DepthwiseConvKernels.GroupSize), DepthwiseConvKernels.GroupSize,
                        Whole(xo), WeightView(wc, y), bo is null ? Whole(y) : Whole(bo), Whole(y), p, count);
            }
            else if (grid.X > 0)
                ImplicitGemmKernels.Launch.ConvForward(Accelerator(x), grid, ImplicitGemmPlan.Group, Whole(xo), WeightView(wc, y),
                    bo is null ? Whole(y) : Whole(bo), Whole(y), p);
        }
        bool gx = x.RequiresGrad, gw = w.RequiresGrad, gb = b?.RequiresGrad ?? false;
        Tensor[] inputs = b is null ? [x, w] : [x, w, b];
        return Graph.Record(y, op, inputs, [x, w], (g, saved) =>
        {
            Tensor? dx = gx ? ConvBackwardDataOp(g, saved[1], s) : null;
            Tensor? dw = gw ? ConvBackwardWeightOp(saved[0], g, s) : null;
            if (inputs.Length == 2) return [dx, dw];
            return [dx, dw, gb ? g.Sum([0, 2, 3]) : null];
        });
    }

    /// <summary>
    /// The recorded device backward-data dx [N, Cin, H, W] of conv2d for output gradient <paramref name="dy"/>
    /// (any strides) and weight <paramref name="w"/>. Linear in both: its gradients are conv2d(h, w) for dy and
    /// backward-weight(h, dy) for w.
    /// </summary>
    internal static Tensor ConvBackwardDataOp(Tensor dy, Tensor w, Cpu.ConvKernels.Shape s, bool depthwiseKernels = true)
    {
        const string op = "conv2d_backward_data";
        var dx = Output([s.N, s.Cin, s.H, s.W], dy, op);
        using (Tensor.NoGrad())
        using (var go = ConvOperand(dy))
        using (var wc = w.Contiguous())
        {
            var p = ImplicitGemmPlan.Create(s, null, go, null);
            var grid = ImplicitGemmPlan.BackwardDataGrid(p);
            int count = (int)dx.NumEl;
            if (depthwiseKernels && s.IsDepthwise)
            {
                if (count > 0)
                    DepthwiseConvKernels.Launch.DepthwiseBackwardData(Accelerator(dy), Groups(count, DepthwiseConvKernels.GroupSize), DepthwiseConvKernels.GroupSize,
                        Whole(go), WeightView(wc, dx), Whole(dx), p, count);
            }
            else if (grid.X > 0)
                ImplicitGemmKernels.Launch.ConvBackwardData(Accelerator(dy), grid, ImplicitGemmPlan.Group, Whole(go), WeightView(wc, dx), Whole(dx), p);
        }
        bool gg = dy.RequiresGrad, gw = w.RequiresGrad;
        return Graph.Record(dx, op, [dy, w], [dy, w], (h, saved) =>
            [gg ? ConvForwardOp(h, saved[1], null, s) : null, gw ? ConvBackwardWeightOp(h, saved[0], s) : null]);
    }

    /// <summary>
    /// The recorded device backward-weight dw [Cout, Cin/groups, kH, kW] of conv2d for input <paramref name="x"/>
    /// and output gradient <paramref name="dy"/> (both any strides). Linear in both: its gradients are
    /// backward-data(dy, h) for x and conv2d(x, h) for dy. <paramref name="qPerSplit"/> forces the length of each
    /// chunk of the N·OH·OW reduction (tests); by default ImplicitGemmPlan picks it. <paramref name="depthwiseKernels"/>
    /// false runs depthwise shapes through the implicit-GEMM kernels too (tests compare both).
    /// </summary>
    internal static Tensor ConvBackwardWeightOp(Tensor x, Tensor dy, Cpu.ConvKernels.Shape s, int? qPerSplit = null, bool depthwiseKernels = true)
    {
        const string op = "conv2d_backward_weight";
        var dw = Output([s.Cout, s.Cpg, s.Geo.KH, s.Geo.KW], x, op);
        using (Tensor.NoGrad())
        using (var xo = ConvOperand(x))
        using (var go = ConvOperand(dy))
        {
            var p = ImplicitGemmPlan.Create(s, xo, go, null, qPerSplit);
            var grid = ImplicitGemmPlan.BackwardWeightGrid(p);
            if (depthwiseKernels && s.IsDepthwise)
            {
                if (dw.NumEl > 0)
                    DepthwiseConvKernels.Launch.DepthwiseBackwardWeight(Accelerator(x), (int)dw.NumEl, DepthwiseConvKernels.GroupSize, Whole(xo), Whole(go), Whole(dw), p);
            }
            else if (grid.X > 0)
            {
                var acc = Accelerator(x);
                if (p.Splits == 1)
                    ImplicitGemmKernels.Launch.ConvBackwardWeight(acc, grid, ImplicitGemmPlan.Group, Whole(xo), Whole(go), Whole(dw), p);
                else
                {
                    int count = checked((int)dw.NumEl);
                    using var partials = Tensor.Allocate([p.Splits, count], DType.Float32, zero: false, op, x.Device);
                    ImplicitGemmKernels.Launch.ConvBackwardWeight(acc, grid, ImplicitGemmPlan.Group, Whole(xo), Whole(go), Whole(partials), p);
                    ImplicitGemmKernels.Launch.SumSplits(acc, Groups(count, ImplicitGemmKernels.SumGroupSize), ImplicitGemmKernels.SumGroupSize,
                        Whole(partials), Whole(dw), count, p.Splits);
                }
            }
        }
        bool gx = x.RequiresGrad, gg = dy.RequiresGrad;
        return Graph.Record(dw, op, [x, dy], [x, dy], (h, saved) =>
            [gx ? ConvBackwardDataOp(saved[1], h, s) : null, gg ? ConvForwardOp(saved[0], h, null, s) : null]);
    }
}
