using System.Numerics;
using Engine.Tensors.AutoDiff;
using Engine.Tensors.Cpu;

namespace Engine.Tensors;

/// <summary>
/// 2-D pooling over the last two dims of [N, C, H, W] float tensors, with PyTorch's semantics
/// (floor output sizes, i.e. ceil_mode=False):
/// <list type="bullet">
/// <item><see cref="MaxPool2d"/>: window maximum; the gradient goes to the argmax only (scatter-add of g
/// at the saved indices, whose own gradient is a gather, so double backward works).</item>
/// <item><see cref="AvgPool2d"/>: window mean, one direct pass (and its gradient another).</item>
/// <item><see cref="AdaptiveAvgPool2d"/>: torch's adaptive windows [⌊i·H/oH⌋, ⌈(i+1)·H/oH⌉), computed as
/// P_H · x · P_Wᵀ with averaging matrices (the windows are products of row and column ranges).</item>
/// </list>
/// </summary>
public sealed partial class Tensor
{
    /// <summary>
    /// torch.nn.functional.max_pool2d: the maximum of each kH×kW window (windows start every stride
    /// elements on the input padded with −∞ by <paramref name="padding"/>). NaN counts as the maximum (as
    /// in PyTorch); among equal maxima the first in row-major window order wins.
    /// Gradient: g added at each window's argmax.
    /// </summary>
    /// <param name="kernelSize">(kH, kW).</param>
    /// <param name="stride">Default: the kernel size.</param>
    /// <param name="padding">Implicit −∞ padding, at most half the kernel size (PyTorch's rule).</param>
    /// <param name="dilation">Spacing between window taps; default (1, 1).</param>
    public Tensor MaxPool2d((int H, int W) kernelSize, (int H, int W)? stride = null, (int H, int W)? padding = null, (int H, int W)? dilation = null)
    {
        var (values, indices) = MaxPool2dWithIndices(kernelSize, stride, padding, dilation);
        indices.Dispose();
        return values;
    }

    /// <summary>
    /// <see cref="MaxPool2d"/> that also returns the argmax of each window as an int64 tensor of the output's
    /// shape holding the flat position h·W + w inside the input plane (torch's return_indices=True).
    /// </summary>
    public (Tensor Values, Tensor Indices) MaxPool2dWithIndices((int H, int W) kernelSize, (int H, int W)? stride = null, (int H, int W)? padding = null, (int H, int W)? dilation = null)
    {
        if (Kernels.KernelDispatch.IsAccelerated(this)) return Kernels.KernelDispatch.MaxPool2dWithIndices(this, kernelSize, stride, padding, dilation);
        const string op = "max_pool2d";
        var geo = PoolGeometry(op, kernelSize, stride, padding, dilation);
        RequirePoolInput(op);
        long n = _shape[0], c = _shape[1], h = _shape[2], w = _shape[3];
        var (oh, ow) = geo.OutputSize(op, h, w);
        using var x = Contiguous();
        var y = Allocate([n, c, oh, ow], DType, zero: false, op);
        var idx = Allocate([n, c, oh, ow], DType.Int64, zero: false, op);
        if (DType == DType.Float32) MaxPoolKernel<float>(x, y, idx, n * c, h, w, oh, ow, geo);
        else MaxPoolKernel<double>(x, y, idx, n * c, h, w, oh, ow, geo);
        Graph.Record(y, op, [this], [idx], (g, s) =>
        {
            using var zeros = Zeros([n, c, h * w], g.DType);
            using var flatIdx = s[0].View(n, c, oh * ow);
            using var flatG = g.Reshape(n, c, oh * ow);
            using var scattered = zeros.ScatterAdd(2, flatIdx, flatG);
            return [scattered.View(n, c, h, w)];
        });
        return (y, idx);
    }

    /// <summary>
    /// torch.nn.functional.avg_pool2d: the mean of each kH×kW window of the zero-padded input.
    /// With <paramref name="countIncludePad"/> (PyTorch's default) the divisor is always kH·kW; without it,
    /// the number of window elements inside the unpadded input. Gradient: each input element gets g/divisor
    /// from every window that holds it (a recorded op whose own gradient is avg_pool2d again, so gradients
    /// of any order work).
    /// </summary>
    /// <remarks>One direct pass per plane (no unfolded [N·C, kH·kW, L] copy of the input): each window is summed
    /// in the tensor's precision in row-major tap order, then divided.</remarks>
    /// <param name="kernelSize">(kH, kW).</param>
    /// <param name="stride">Default: the kernel size.</param>
    /// <param name="padding">Zero padding, at most half the kernel size.</param>
    /// <param name="countIncludePad">Whether padded zeros count in the divisor.</param>
    public Tensor AvgPool2d((int H, int W) kernelSize, (int H, int W)? stride = null, (int H, int W)? padding = null, bool countIncludePad = true)
    {
        const string op = "avg_pool2d";
        var geo = PoolGeometry(op, kernelSize, stride, padding, null);
        RequirePoolInput(op);
        long n = _shape[0], c = _shape[1], h = _shape[2], w = _shape[3];
        var (oh, ow) = geo.OutputSize(op, h, w);
        if (Kernels.KernelDispatch.IsAccelerated(this)) return AvgPoolComposite(kernelSize, geo, n, c, h, w, oh, ow, countIncludePad);
        return AvgPoolOp(this, n * c, h, w, oh, ow, geo, countIncludePad);
    }

    /// <summary>Average pooling from device ops (Unfold + mean; padded windows divided by their in-bounds count): the path for tensors on an accelerator.</summary>
    private Tensor AvgPoolComposite((int H, int W) kernelSize, ConvGeometry geo, long n, long c, long h, long w, long oh, long ow, bool countIncludePad)
    {
        var s = (geo.SH, geo.SW);
        var p = (geo.PH, geo.PW);
        using var planes = Reshape(n * c, 1, h, w);
        using var cols = planes.Unfold(kernelSize, s, p); // [N·C, kH·kW, L]
        if (countIncludePad || (p.PH == 0 && p.PW == 0))
        {
            using var mean = cols.Mean(1);
            return mean.View(n, c, oh, ow);
        }
        using var sum = cols.Sum(1);            // [N·C, L]
        Tensor counts;
        using (NoGrad())
        using (var ones = Ones([1, 1, h, w], DType, Device))
        using (var onesCols = ones.Unfold(kernelSize, s, p))
            counts = onesCols.Sum(1);           // [1, L]: in-bounds elements per window
        using (counts)
        using (var avg = sum.Div(counts))
            return avg.View(n, c, oh, ow);
    }

    private static unsafe Tensor AvgPoolOp(Tensor x, long planes, long h, long w, long oh, long ow, ConvGeometry geo, bool countIncludePad)
    {
        long n = x._shape[0], c = x._shape[1];
        var y = Allocate([n, c, oh, ow], x.DType, zero: false, "avg_pool2d");
        using (NoGrad())
        using (var xc = x.Contiguous())
        {
            if (x.DType == DType.Float32) AvgPoolKernel(xc.Ptr<float>(), y.Ptr<float>(), planes, h, w, oh, ow, geo, countIncludePad, backward: false);
            else AvgPoolKernel(xc.Ptr<double>(), y.Ptr<double>(), planes, h, w, oh, ow, geo, countIncludePad, backward: false);
        }
        return Graph.Record(y, "avg_pool2d", x, g => AvgPoolBackwardOp(g, planes, h, w, oh, ow, geo, countIncludePad));
    }

    /// <summary>The recorded gradient of avg_pool2d: g [N, C, oH, oW] spread back to [N, C, H, W]. Linear in g; its gradient is avg_pool2d.</summary>
    private static unsafe Tensor AvgPoolBackwardOp(Tensor g, long planes, long h, long w, long oh, long ow, ConvGeometry geo, bool countIncludePad)
    {
        long n = g._shape[0], c = g._shape[1];
        var dx = Allocate([n, c, h, w], g.DType, zero: true, "avg_pool2d_backward");
        using (NoGrad())
        using (var gc = g.Contiguous())
        {
            if (g.DType == DType.Float32) AvgPoolKernel(dx.Ptr<float>(), gc.Ptr<float>(), planes, h, w, oh, ow, geo, countIncludePad, backward: true);
            else AvgPoolKernel(dx.Ptr<double>(), gc.Ptr<double>(), planes, h, w, oh, ow, geo, countIncludePad, backward: true);
        }
        return Graph.Record(dx, "avg_pool2d_backward", g, hg => AvgPoolOp(hg, planes, h, w, oh, ow, geo, countIncludePad));
    }

    /// <summary>
    /// Forward: y[plane, oy, ox] = (Σ window of x) / divisor. Backward (<paramref name="backward"/>): x[plane, taps of
    /// (oy, ox)] += y[plane, oy, ox] / divisor, i.e. <paramref name="x"/> receives the gradient (zeroed by the caller)
    /// and <paramref name="y"/> holds g. One plane per work item, so each input plane has one writer.
    /// </summary>
    private static unsafe void AvgPoolKernel<T>(T* x, T* y, long planes, long h, long w, long oh, long ow, ConvGeometry geo, bool countIncludePad, bool backward)
        where T : unmanaged, INumber<T>
    {
        nint px = (nint)x, py = (nint)y;
        T full = T.CreateChecked(geo.KH * geo.KW);
        Parallelism.For(planes, planes * oh * ow * geo.KH * geo.KW >= Parallelism.ElementwiseThreshold, plane =>
        {
            T* xp = (T*)px + plane * h * w;
            T* yp = (T*)py + plane * oh * ow;
            for (long oy = 0; oy < oh; oy++)
            {
                long y0 = oy * geo.SH - geo.PH, y1 = Math.Min(y0 + geo.KH, h);
                long ys = Math.Max(y0, 0);
                for (long ox = 0; ox < ow; ox++)
                {
                    long x0 = ox * geo.SW - geo.PW, x1 = Math.Min(x0 + geo.KW, w);
                    long xs = Math.Max(x0, 0);
                    T divisor = countIncludePad ? full : T.CreateChecked((y1 - ys) * (x1 - xs));
                    if (backward)
                    {
                        T v = yp[oy * ow + ox] / divisor;
                        for (long iy = ys; iy < y1; iy++)
                            for (long ix = xs; ix < x1; ix++) xp[iy * w + ix] += v;
                    }
                    else
                    {
                        T sum = T.Zero;
                        for (long iy = ys; iy < y1; iy++)
                            for (long ix = xs; ix < x1; ix++) sum += xp[iy * w + ix];
                        yp[oy * ow + ox] = sum / divisor;
                    }
                }
            }
        });
    }

    /// <summary>
    /// torch.nn.functional.adaptive_avg_pool2d: output [N, C, oH, oW] where output (i, j) is the mean of
    /// rows [⌊i·H/oH⌋, ⌈(i+1)·H/oH⌉) and columns [⌊j·W/oW⌋, ⌈(j+1)·W/oW⌉). Computed as two matrix
    /// products with averaging matrices, so the gradient is that of matmul.
    /// </summary>
    public Tensor AdaptiveAvgPool2d(long outputH, long outputW)
    {
        const string op = "adaptive_avg_pool2d";
        RequirePoolInput(op);
        if (outputH < 1 || outputW < 1)
            throw new ArgumentException($"{op}: output size must be positive, got ({outputH}, {outputW}).");
        long h = _shape[2], w = _shape[3];
        if (h < 1 || w < 1)
            throw new ArgumentException($"{op}: input of shape {ShapeUtil.Format(Shape)} has an empty plane.");
        using var ph = AveragingMatrix(outputH, h, DType, Device); // [oH, H]
        using var pw = AveragingMatrix(outputW, w, DType, Device); // [oW, W]
        using var pwt = pw.T;                                   // [W, oW]
        using var rows = ph.MatMul(this);                         // [N, C, oH, W]
        return rows.MatMul(pwt);                                  // [N, C, oH, oW]
    }

    /// <summary>[outSize, inSize] matrix whose row i averages torch's adaptive window i.</summary>
    private static Tensor AveragingMatrix(long outSize, long inSize, DType dtype, Engine.Runtime.Device device)
    {
        var m = new double[outSize * inSize];
        for (long i = 0; i < outSize; i++)
        {
            long start = i * inSize / outSize;
            long end = ((i + 1) * inSize + outSize - 1) / outSize;
            for (long j = start; j < end; j++) m[i * inSize + j] = 1.0 / (end - start);
        }
        using var t = FromArray(m, outSize, inSize);
        var typed = dtype == DType.Float64 ? t.Clone() : t.To(dtype);
        if (device == typed.Device) return typed;
        using (typed) return typed.To(device); // average pooling on an accelerator: the matmuls run there
    }

    private void RequirePoolInput(string op)
    {
        // No CPU-only check: max-pool dispatches to its kernel before this; average pools are composed of
        // Unfold, mean and matmul, which run on every device.
        if (Rank != 4 || !DType.IsFloatingPoint())
            throw new ArgumentException($"{op}: expects a 4-D [N, C, H, W] float tensor, got {DType.Name()} {ShapeUtil.Format(Shape)}.");
    }

    internal static ConvGeometry PoolGeometry(string op, (int H, int W) kernel, (int H, int W)? stride, (int H, int W)? padding, (int H, int W)? dilation)
    {
        var geo = ConvGeometry.Create(op, kernel, stride ?? kernel, padding, dilation);
        if (geo.PH > geo.KH / 2 || geo.PW > geo.KW / 2)
            throw new ArgumentException($"{op}: padding ({geo.PH}, {geo.PW}) must be at most half the kernel size ({geo.KH}, {geo.KW}).");
        return geo;
    }

    private static unsafe void MaxPoolKernel<T>(Tensor x, Tensor y, Tensor idx, long planes, long h, long w, long oh, long ow, ConvGeometry geo)
        where T : unmanaged, INumber<T>
    {
        nint px = (nint)x.Ptr<T>(), py = (nint)y.Ptr<T>(), pi = (nint)idx.Ptr<long>();
        Parallelism.For(planes, planes * oh * ow * geo.KH * geo.KW >= Parallelism.ElementwiseThreshold, plane =>
        {
            T* src = (T*)px + plane * h * w;
            T* dst = (T*)py + plane * oh * ow;
            long* di = (long*)pi + plane * oh * ow;
            for (long oy = 0; oy < oh; oy++)
                for (long ox = 0; ox < ow; ox++)
                {
                    long best = -1;
                    T bestValue = T.Zero;
                    for (long i = 0; i < geo.KH; i++)
                    {
                        long iy = oy * geo.SH - geo.PH + i * geo.DH;
                        if (iy < 0 || iy >= h) continue;
                        for (long j = 0; j < geo.KW; j++)
                        {
                            long ix = ox * geo.SW - geo.PW + j * geo.DW;
                            if (ix < 0 || ix >= w) continue;
                            T v = src[iy * w + ix];
                            if (best < 0 || v > bestValue || T.IsNaN(v))
                            {
                                best = iy * w + ix;
                                bestValue = v;
                                if (T.IsNaN(v)) goto done;
                            }
                        }
                    }
                done:
                    // padding ≤ kernel/2 leaves an input element in every window unless dilation spreads the
                    // taps over the padding only; such a window is −∞ and sends its gradient nowhere useful
                    // (index 0, as a −∞ output has no meaningful gradient).
                    if (best < 0) { best = 0; bestValue = T.CreateChecked(double.NegativeInfinity); }
                    dst[oy * ow + ox] = bestValue;
                    di[oy * ow + ox] = best;
                }
        });
    }
}
