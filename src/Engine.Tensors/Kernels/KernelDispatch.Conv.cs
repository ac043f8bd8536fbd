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
