using System.Numerics;
using Engine.Tensors.AutoDiff;
using Engine.Tensors.Cpu;

namespace Engine.Tensors;

/// <summary>
/// 2-D convolution and its building blocks, NCHW:
/// <list type="bullet">
/// <item><see cref="Unfold"/> (im2col, torch.nn.functional.unfold): every kH×kW patch of the (zero-padded)
/// input becomes a column, [N, C, H, W] → [N, C·kH·kW, L], L = outH·outW.</item>
/// <item><see cref="Fold"/> (col2im, torch.nn.functional.fold): the adjoint, which adds each column back
/// into its patch (overlaps add up), [N, C·kH·kW, L] → [N, C, H, W].</item>
/// <item><see cref="Conv2d"/>: the convolution, with its backward-data and backward-weight as recorded
/// ops (kernels in <c>Cpu/ConvKernels.cs</c>: per-image im2col + GEMM, 1×1 and depthwise paths).</item>
/// <item><see cref="Pad2d"/>: constant padding of the last two dims.</item>
/// </list>
/// Unfold and Fold are linear and each other's adjoint, so each one's backward is the other (recorded,
/// so gradients of gradients work).
/// Output size per spatial dim: ⌊(in + 2·pad − dilation·(k − 1) − 1) / stride⌋ + 1.
/// </summary>
public sealed partial class Tensor
{
    /// <summary>
    /// im2col (torch.nn.functional.unfold) of a 4-D [N, C, H, W] float tensor: output [N, C·kH·kW, L]
    /// where row c·kH·kW + i·kW + j, column oy·outW + ox holds
    /// x[n, c, oy·strideH − padH + i·dilationH, ox·strideW − padW + j·dilationW] (0 outside the input).
    /// Gradient: <see cref="Fold"/> of g back to [N, C, H, W].
    /// </summary>
    /// <param name="kernelSize">(kH, kW), each ≥ 1.</param>
    /// <param name="stride">(strideH, strideW), each ≥ 1; default (1, 1).</param>
    /// <param name="padding">Zero padding on both sides (padH, padW), each ≥ 0; default (0, 0).</param>
    /// <param name="dilation">Spacing between kernel taps, each ≥ 1; default (1, 1).</param>
    public Tensor Unfold((int H, int W) kernelSize, (int H, int W)? stride = null, (int H, int W)? padding = null, (int H, int W)? dilation = null)
    {
        if (Kernels.KernelDispatch.IsAccelerated(this)) return Kernels.KernelDispatch.Unfold(this, kernelSize, stride, padding, dilation);
        const string op = "unfold";
        var geo = ConvGeometry.Create(op, kernelSize, stride, padding, dilation);
        RequireCpu(op);
        if (Rank != 4 || !DType.IsFloatingPoint())
            throw new ArgumentException($"{op}: expects a 4-D [N, C, H, W] float tensor, got {DType.Name()} {ShapeUtil.Format(Shape)}.");
        long n = _shape[0], c = _shape[1], h = _shape[2], w = _shape[3];
        var (oh, ow) = geo.OutputSize(op, h, w);
        long kk = (long)geo.KH * geo.KW;
        using var x = Contiguous();
        var y = Allocate([n, c * kk, oh * ow], DType, zero: false, op);
        if (DType == DType.Float32) UnfoldKernel<float>(x, y, n * c, h, w, oh, ow, geo);
        else UnfoldKernel<double>(x, y, n * c, h, w, oh, ow, geo);
        return Graph.Record(y, op, this, g => g.Fold((h, w), kernelSize, stride, padding, dilation));
    }

    /// <summary>
    /// col2im (torch.nn.functional.fold), the adjoint of <see cref="Unfold"/>: a [N, C·kH·kW, L] tensor
    /// becomes [N, C, H, W] = <paramref name="outputSize"/>, each column added into the patch Unfold took
    /// it from (entries that fall into the padding are dropped). L must equal outH·outW for these
    /// parameters. Gradient: <see cref="Unfold"/> of g.
    /// </summary>
    /// <remarks>Numerics: each output element sums at most kH·kW terms in the tensor's own precision,
    /// always in the same order (kernel row, kernel column, output position), so results do not depend on
    /// the thread count.</remarks>
    public Tensor Fold((long H, long W) outputSize, (int H, int W) kernelSize, (int H, int W)? stride = null, (int H, int W)? padding = null, (int H, int W)? dilation = null)
    {
        if (Kernels.KernelDispatch.IsAccelerated(this)) return Kernels.KernelDispatch.Fold(this, outputSize, kernelSize, stride, padding, dilation);
        const string op = "fold";
        var geo = ConvGeometry.Create(op, kernelSize, stride, padding, dilation);
        RequireCpu(op);
        if (Rank != 3 || !DType.IsFloatingPoint())
            throw new ArgumentException($"{op}: expects a 3-D [N, C·kH·kW, L] float tensor, got {DType.Name()} {ShapeUtil.Format(Shape)}.");
        var (h, w) = outputSize;
        if (h < 1 || w < 1) throw new ArgumentException($"{op}: output size must be positive, got ({h}, {w}).");
        long kk = (long)geo.KH * geo.KW;
        var (oh, ow) = geo.OutputSize(op, h, w);
        if (_shape[1] % kk != 0 || _shape[2] != oh * ow)
            throw new ArgumentException(
                $"{op}: input of shape {ShapeUtil.Format(Shape)} does not fit kernel ({geo.KH}, {geo.KW}) and output size ({h}, {w}): " +
                $"dim 1 must be a multiple of {kk} and dim 2 must be {oh}·{ow} = {oh * ow}.");
        long n = _shape[0], c = _shape[1] / kk;
        using var cols = Contiguous();
        var y = Allocate([n, c, h, w], DType, zero: true, op);
        if (DType == DType.Float32) FoldKernel<float>(cols, y, n * c, h, w, oh, ow, geo);
        else FoldKernel<double>(cols, y, n * c, h, w, oh, ow, geo);
        return Graph.Record(y, op, this, g => g.Unfold(kernelSize, stride, padding, dilation));
    }

    /// <summary>
    /// torch.nn.functional.conv2d: input [N, Cin, H, W], weight [Cout, Cin/groups, kH, kW], optional bias
    /// [Cout]; output [N, Cout, outH, outW] with
    /// y[n, o, oy, ox] = bias[o] + Σ_(c, i, j) w[o, c, i, j]·x[n, g·Cin/groups + c, oy·sH − pH + i·dH, ox·sW − pW + j·dW]
    /// (g = the group of o; 0 outside the input).
    /// <para>
    /// On an accelerator: implicit-GEMM kernels (kernels/Conv/ImplicitGemmKernels.cs) for forward, backward-data
    /// and backward-weight, which never build the unfolded input. On the CPU:
    /// computed by <c>Cpu/ConvKernels.cs</c>: im2col + GEMM one image at a time (the batch's unfolded input is
    /// never built), the input read directly for 1×1 stride-1 unpadded kernels, a direct loop for depthwise
    /// (Cin/groups = 1) convolutions.
    /// </para>
    /// Gradient: dx = conv2d backward-data(g, w) (Wᵀ·g, then col2im), dw = conv2d backward-weight(x, g)
    /// (Σ_n g·colsᵀ), dbias = Σ g over N, outH, outW. The two backward ops are recorded ops themselves whose
    /// gradients are again one of these three, so gradients of any order work.
    /// </summary>
    /// <remarks>Numerics: float32 accumulates in float32 (the GEMM's order, see <c>Cpu/Gemm.cs</c>); results
    /// do not depend on the thread count.</remarks>
    public Tensor Conv2d(Tensor weight, Tensor? bias = null, (int H, int W)? stride = null, (int H, int W)? padding = null, (int H, int W)? dilation = null, int groups = 1)
    {
        ArgumentNullException.ThrowIfNull(weight);
        const string op = "conv2d";
        if (Rank != 4 || weight.Rank != 4)
            throw new ArgumentException($"{op}: expects input [N, C, H, W] and weight [Cout, Cin/groups, kH, kW], got {ShapeUtil.Format(Shape)} and {ShapeUtil.Format(weight.Shape)}.");
        if (groups < 1) throw new ArgumentException($"{op}: groups must be ≥ 1, got {groups}.");
        long cin = _shape[1], cout = weight._shape[0], cpg = weight._shape[1];
        if (cin != cpg * groups || cout % groups != 0)
            throw new ArgumentException(
                $"{op}: input {ShapeUtil.Format(Shape)} has {cin} channels, but weight {ShapeUtil.Format(weight.Shape)} with groups={groups} expects {cpg * groups} " +
                $"(and Cout = {cout} must be a multiple of groups).");
        if (DType != weight.DType || (bias is not null && bias.DType != DType))
            throw new ArgumentException($"{op}: input, weight and bias must have one dtype, got {DType.Name()}, {weight.DType.Name()}{(bias is null ? "" : ", " + bias.DType.Name())}.");
        if (!DType.IsFloatingPoint())
            throw new ArgumentException($"{op}: expects float32 or float64 tensors, got {DType.Name()}.");
        if (bias is not null && (bias.Rank != 1 || bias._shape[0] != cout))
            throw new ArgumentException($"{op}: bias must have shape [{cout}], got {ShapeUtil.Format(bias.Shape)}.");
        if (Kernels.KernelDispatch.IsAccelerated(this) || Kernels.KernelDispatch.IsAccelerated(weight))
            return Kernels.KernelDispatch.ImplicitGemmConv2d(this, weight, bias, stride, padding, dilation, groups)
                ?? ConvComposite(weight, bias, stride, padding, dilation, groups);
        RequireCpu(op);
        weight.RequireCpu(op);
        bias?.RequireCpu(op);
        var geo = ConvGeometry.Create(op, ((int)weight._shape[2], (int)weight._shape[3]), stride, padding, dilation);
        var (oh, ow) = geo.OutputSize(op, _shape[2], _shape[3]);
        var s = new ConvKernels.Shape(_shape[0], cin, _shape[2], _shape[3], cout, oh, ow, groups, geo);
        return ConvForwardOp(this, weight, bias, s);
    }

    /// <summary>
    /// conv2d on an accelerator when the implicit-GEMM kernels do not take it (KernelDispatch.ImplicitGemmConv2d
    /// returns null: ENGINE_CONV=im2col, 32-bit index overflow, mixed devices or dtypes): Unfold (the Im2Col kernel) and a (batched) matmul with the weight, plus the
    /// bias; the gradients are those of Unfold (Col2Im) and matmul. Shapes already validated.
    /// </summary>
    private Tensor ConvComposite(Tensor weight, Tensor? bias, (int H, int W)? stride, (int H, int W)? padding, (int H, int W)? dilation, int groups)
    {
        const string op = "conv2d";
        long cout = weight._shape[0], cpg = weight._shape[1];
        (int, int) k = ((int)weight._shape[2], (int)weight._shape[3]);
        long n = _shape[0];
        var geo = ConvGeometry.Create(op, k, stride, padding, dilation);
        var (oh, ow) = geo.OutputSize(op, _shape[2], _shape[3]);
        using var cols = Unfold(k, stride, padding, dilation);
        long l = cols._shape[2];
        long kg = cpg * k.Item1 * k.Item2;
        Tensor y;
        if (groups == 1)
        {
            using var w2 = weight.Reshape(cout, kg);
            using var prod = w2.MatMul(cols); // [Cout, K]·[N, K, L] → [N, Cout, L]
            y = prod.View(n, cout, oh, ow);
        }
        else
        {
            using var wg = weight.Reshape(groups, cout / groups, kg);
            using var cg = cols.View(n, groups, kg, l);
            using var prod = wg.MatMul(cg); // [G, Cout/G, K]·[N, G, K, L] → [N, G, Cout/G, L]
            y = prod.View(n, cout, oh, ow);
        }
        if (bias is null) return y;
        using (y)
        using (var b = bias.View(1, cout, 1, 1))
            return y.Add(b);
    }

    /// <summary>The recorded conv2d forward (shapes already validated).</summary>
    private static unsafe Tensor ConvForwardOp(Tensor x, Tensor w, Tensor? b, ConvKernels.Shape s)
    {
        var y = Allocate([s.N, s.Cout, s.OH, s.OW], x.DType, zero: false, "conv2d");
        using (NoGrad())
        using (var xc = x.Contiguous())
        using (var wc = w.Contiguous())
        using (var bc = b?.Contiguous())
        {
            if (x.DType == DType.Float32) ConvKernels.Forward(s, xc.Ptr<float>(), wc.Ptr<float>(), bc is null ? null : bc.Ptr<float>(), y.Ptr<float>());
            else ConvKernels.Forward(s, xc.Ptr<double>(), wc.Ptr<double>(), bc is null ? null : bc.Ptr<double>(), y.Ptr<double>());
        }
        bool gx = x.RequiresGrad, gw = w.RequiresGrad, gb = b?.RequiresGrad ?? false;
        Tensor[] inputs = b is null ? [x, w] : [x, w, b];
        return Graph.Record(y, "conv2d", inputs, [x, w], (g, saved) =>
        {
            Tensor? dx = gx ? ConvBackwardDataOp(g, saved[1], s) : null;
            Tensor? dw = gw ? ConvBackwardWeightOp(saved[0], g, s) : null;
            if (inputs.Length == 2) return [dx, dw];
            return [dx, dw, gb ? g.Sum([0, 2, 3]) : null];
        });
    }

    /// <summary>
    /// The recorded backward-data of conv2d: dx [N, Cin, H, W] for output gradient <paramref name="dy"/> and
    /// weight <paramref name="w"/>. Linear in both, so its gradients are conv2d(h, w) for dy and
    /// backward-weight(h, dy) for w.
    /// </summary>
    private static unsafe Tensor ConvBackwardDataOp(Tensor dy, Tensor w, ConvKernels.Shape s)
    {
        var dx = Allocate([s.N, s.Cin, s.H, s.W], dy.DType, zero: false, "conv2d_backward_data");
        using (NoGrad())
        using (var gc = GradOperand(dy, s, out var st))
        using (var wc = w.Contiguous())
        {
            if (dy.DType == DType.Float32) ConvKernels.BackwardData(s, gc.Ptr<float>(), st, wc.Ptr<float>(), dx.Ptr<float>());
            else ConvKernels.BackwardData(s, gc.Ptr<double>(), st, wc.Ptr<double>(), dx.Ptr<double>());
        }
        bool gg = dy.RequiresGrad, gw = w.RequiresGrad;
        return Graph.Record(dx, "conv2d_backward_data", [dy, w], [dy, w], (h, saved) =>
            [gg ? ConvForwardOp(h, saved[1], null, s) : null, gw ? ConvBackwardWeightOp(h, saved[0], s) : null]);
    }

    /// <summary>
    /// An output gradient as the backward kernels read it: the tensor itself (a new handle) when its (outH, outW)
    /// dims collapse into one stride, e.g. a contiguous gradient or the expanded gradient of a sum (all strides 0,
    /// read in place instead of materialized), else a contiguous copy. Depthwise kernels take contiguous data only.
    /// </summary>
    private static Tensor GradOperand(Tensor dy, ConvKernels.Shape s, out ConvKernels.GradStrides strides)
    {
        var t = dy._strides;
        long sl = s.OW == 1 ? t[2] : t[3];
        if (!s.IsDepthwise && (s.OH == 1 || s.OW == 1 || t[2] == s.OW * t[3]))
        {
            strides = new ConvKernels.GradStrides(t[0], t[1], sl);
            return dy.Alias();
        }
        strides = new ConvKernels.GradStrides(s.Cout * s.L, s.L, 1);
        return dy.Contiguous();
    }

    /// <summary>
    /// The recorded backward-weight of conv2d: dw [Cout, Cin/groups, kH, kW] for input <paramref name="x"/> and
    /// output gradient <paramref name="dy"/>. Linear in both, so its gradients are backward-data(dy, h) for x
    /// and conv2d(x, h) for dy.
    /// </summary>
    private static unsafe Tensor ConvBackwardWeightOp(Tensor x, Tensor dy, ConvKernels.Shape s)
    {
        var dw = Allocate([s.Cout, s.Cpg, s.Geo.KH, s.Geo.KW], x.DType, zero: false, "conv2d_backward_weight");
        using (NoGrad())
        using (var xc = x.Contiguous())
        using (var gc = GradOperand(dy, s, out var st))
        {
            if (x.DType == DType.Float32) ConvKernels.BackwardWeight(s, xc.Ptr<float>(), gc.Ptr<float>(), st, dw.Ptr<float>());
            else ConvKernels.BackwardWeight(s, xc.Ptr<double>(), gc.Ptr<double>(), st, dw.Ptr<double>());
        }
        bool gx = x.RequiresGrad, gg = dy.RequiresGrad;
        return Graph.Record(dw, "conv2d_backward_weight", [x, dy], [x, dy], (h, saved) =>
            [gx ? ConvBackwardDataOp(saved[1], h, s) : null, gg ? ConvForwardOp(saved[0], h, null, s) : null]);
    }

    /// <summary>
    /// Constant padding of the last two dims (torch.nn.functional.pad(x, (left, right, top, bottom), value=...)):
    /// [..., H, W] → [..., top + H + bottom, left + W + right]. Paddings are ≥ 0. Gradient: the central
    /// window of g (a narrow).
    /// </summary>
    public Tensor Pad2d(long left, long right, long top, long bottom, double value = 0)
    {
        const string op = "pad2d";
        if (Rank < 2) throw new ArgumentException($"{op}: expects at least 2 dims, got shape {ShapeUtil.Format(Shape)}.");
        if (left < 0 || right < 0 || top < 0 || bottom < 0)
            throw new ArgumentException($"{op}: paddings must be ≥ 0, got (left {left}, right {right}, top {top}, bottom {bottom}).");
        long h = _shape[^2], w = _shape[^1];
        var shape = ShapeArray();
        shape[^2] = h + top + bottom;
        shape[^1] = w + left + right;
        var y = Full(shape, value, DType);
        using (NoGrad())
        using (var rows = y.Narrow(-2, top, h))
        using (var region = rows.Narrow(-1, left, w))
            region.CopyFrom_(this);
        return Graph.Record(y, op, this, g =>
        {
            using var rows = g.Narrow(-2, top, h);
            return rows.Narrow(-1, left, w);
        });
    }

    private static unsafe void UnfoldKernel<T>(Tensor x, Tensor y, long planes, long h, long w, long oh, long ow, ConvGeometry geo)
        where T : unmanaged, INumber<T>
    {
        long kk = (long)geo.KH * geo.KW, l = oh * ow, rows = planes * kk;
        nint px = (nint)x.Ptr<T>(), py = (nint)y.Ptr<T>();
        // One work item per output row (plane, kernel tap); enough rows per item to amortize scheduling.
        long perItem = Math.Max(1, Parallelism.Grain / Math.Max(1, l));
        long items = (rows + perItem - 1) / perItem;
        Parallelism.For(items, rows * l >= Parallelism.ElementwiseThreshold, item =>
        {
            long end = Math.Min(rows, (item + 1) * perItem);
            for (long r = item * perItem; r < end; r++)
            {
                long plane = r / kk, tap = r % kk;
                long i = tap / geo.KW, j = tap % geo.KW;
                T* src = (T*)px + plane * h * w;
                T* dst = (T*)py + r * l;
                for (long oy = 0; oy < oh; oy++)
                {
                    long iy = oy * geo.SH - geo.PH + i * geo.DH;
                    T* row = dst + oy * ow;
                    if (iy < 0 || iy >= h)
                    {
                        for (long ox = 0; ox < ow; ox++) row[ox] = T.Zero;
                        continue;
                    }
                    T* srcRow = src + iy * w;
                    long ix = -geo.PW + j * geo.DW;
                    for (long ox = 0; ox < ow; ox++, ix += geo.SW)
                        row[ox] = ix >= 0 && ix < w ? srcRow[ix] : T.Zero;
                }
            }
        });
    }

    private static unsafe void FoldKernel<T>(Tensor cols, Tensor y, long planes, long h, long w, long oh, long ow, ConvGeometry geo)
        where T : unmanaged, INumber<T>
    {
        long kk = (long)geo.KH * geo.KW, l = oh * ow;
        nint pc = (nint)cols.Ptr<T>(), py = (nint)y.Ptr<T>();
        // One work item per (image, channel) plane: each plane is written by one thread only.
        Parallelism.For(planes, planes * kk * l >= Parallelism.ElementwiseThreshold, plane =>
        {
            T* dst = (T*)py + plane * h * w;
            for (long tap = 0; tap < kk; tap++)
            {
                long i = tap / geo.KW, j = tap % geo.KW;
                T* src = (T*)pc + (plane * kk + tap) * l;
                for (long oy = 0; oy < oh; oy++)
                {
                    long iy = oy * geo.SH - geo.PH + i * geo.DH;
                    if (iy < 0 || iy >= h) continue;
                    T* dstRow = dst + iy * w;
                    T* srcRow = src + oy * ow;
                    long ix = -geo.PW + j * geo.DW;
                    for (long ox = 0; ox < ow; ox++, ix += geo.SW)
                        if (ix >= 0 && ix < w) dstRow[ix] += srcRow[ox];
                }
            }
        });
    }
}

/// <summary>Kernel size, stride, padding and dilation of a 2-D sliding window, validated.</summary>
internal readonly record struct ConvGeometry(int KH, int KW, int SH, int SW, int PH, int PW, int DH, int DW)
{
    public static ConvGeometry Create(string op, (int H, int W) kernel, (int H, int W)? stride, (int H, int W)? padding, (int H, int W)? dilation)
    {
        var s = stride ?? (1, 1);
        var p = padding ?? (0, 0);
        var d = dilation ?? (1, 1);
        if (kernel.H < 1 || kernel.W < 1) throw new ArgumentException($"{op}: kernel size must be ≥ 1, got ({kernel.H}, {kernel.W}).");
        if (s.H < 1 || s.W < 1) throw new ArgumentException($"{op}: stride must be ≥ 1, got ({s.H}, {s.W}).");
        if (p.H < 0 || p.W < 0) throw new ArgumentException($"{op}: padding must be ≥ 0, got ({p.H}, {p.W}).");
        if (d.H < 1 || d.W < 1) throw new ArgumentException($"{op}: dilation must be ≥ 1, got ({d.H}, {d.W}).");
        return new ConvGeometry(kernel.H, kernel.W, s.H, s.W, p.H, p.W, d.H, d.W);
    }

    /// <summary>(outH, outW) for an h×w input; throws when the window does not fit.</summary>
    public (long H, long W) OutputSize(string op, long h, long w)
    {
        long oh = (h + 2L * PH - (long)DH * (KH - 1) - 1) / SH + 1;
        long ow = (w + 2L * PW - (long)DW * (KW - 1) - 1) / SW + 1;
        if (h + 2L * PH - (long)DH * (KH - 1) - 1 < 0 || w + 2L * PW - (long)DW * (KW - 1) - 1 < 0 || oh < 1 || ow < 1)
            throw new ArgumentException(
                $"{op}: a {h}×{w} input with padding ({PH}, {PW}) is smaller than the dilated kernel " +
                $"({(long)DH * (KH - 1) + 1}×{(long)DW * (KW - 1) + 1}); the output would be empty.");
        return (oh, ow);
    }
}
