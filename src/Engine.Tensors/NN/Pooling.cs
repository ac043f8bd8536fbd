namespace Engine.Tensors.NN;

/// <summary>torch.nn.MaxPool2d (ceil_mode=False) over [N, C, H, W]; see <see cref="Tensor.MaxPool2d"/>.</summary>
public sealed class MaxPool2d : Module
{
    /// <summary>Square window; stride defaults to the kernel size.</summary>
    public MaxPool2d(int kernelSize, int? stride = null, int padding = 0, int dilation = 1)
        : this((kernelSize, kernelSize), stride is { } s ? (s, s) : null, (padding, padding), (dilation, dilation))
    {
    }

    /// <summary>(height, width) window; stride defaults to the kernel size.</summary>
    public MaxPool2d((int H, int W) kernelSize, (int H, int W)? stride = null, (int H, int W)? padding = null, (int H, int W)? dilation = null)
    {
        KernelSize = kernelSize;
        Stride = stride ?? kernelSize;
        Padding = padding ?? (0, 0);
        Dilation = dilation ?? (1, 1);
        _ = ConvGeometry.Create("MaxPool2d", KernelSize, Stride, Padding, Dilation); // validates
    }

    /// <summary>(kH, kW).</summary>
    public (int H, int W) KernelSize { get; }

    /// <summary>(strideH, strideW).</summary>
    public (int H, int W) Stride { get; }

    /// <summary>Implicit −∞ padding.</summary>
    public (int H, int W) Padding { get; }

    /// <summary>Spacing between window taps.</summary>
    public (int H, int W) Dilation { get; }

    /// <inheritdoc/>
    public override Tensor Forward(Tensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        if (input.Rank != 4) throw new ArgumentException($"{Describe()}: expected input of shape [N, C, H, W], got {ShapeUtil.Format(input.Shape)}.");
        return input.MaxPool2d(KernelSize, Stride, Padding, Dilation);
    }

    /// <inheritdoc/>
    protected override string ExtraRepr()
        => $"kernel_size={Pair(KernelSize)}, stride={Pair(Stride)}, padding={Pair(Padding)}, dilation={Pair(Dilation)}, ceil_mode=False";

    internal static string Pair((int H, int W) p) => p.H == p.W ? p.H.ToString(System.Globalization.CultureInfo.InvariantCulture) : $"({p.H}, {p.W})";
}

/// <summary>torch.nn.AvgPool2d (ceil_mode=False) over [N, C, H, W]; see <see cref="Tensor.AvgPool2d"/>.</summary>
public sealed class AvgPool2d : Module
{
    /// <summary>Square window; stride defaults to the kernel size.</summary>
    public AvgPool2d(int kernelSize, int? stride = null, int padding = 0, bool countIncludePad = true)
        : this((kernelSize, kernelSize), stride is { } s ? (s, s) : null, (padding, padding), countIncludePad)
    {
    }

    /// <summary>(height, width) window; stride defaults to the kernel size.</summary>
    public AvgPool2d((int H, int W) kernelSize, (int H, int W)? stride = null, (int H, int W)? padding = null, bool countIncludePad = true)
    {
        KernelSize = kernelSize;
        Stride = stride ?? kernelSize;
        Padding = padding ?? (0, 0);
        CountIncludePad = countIncludePad;
        _ = ConvGeometry.Create("AvgPool2d", KernelSize, Stride, Padding, null); // validates
    }

    /// <summary>(kH, kW).</summary>
    public (int H, int W) KernelSize { get; }

    /// <summary>(strideH, strideW).</summary>
    public (int H, int W) Stride { get; }

    /// <summary>Zero padding.</summary>
    public (int H, int W) Padding { get; }

    /// <summary>Whether padded zeros count in the divisor.</summary>
    public bool CountIncludePad { get; }

    /// <inheritdoc/>
    public override Tensor Forward(Tensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        if (input.Rank != 4) throw new ArgumentException($"{Describe()}: expected input of shape [N, C, H, W], got {ShapeUtil.Format(input.Shape)}.");
        return input.AvgPool2d(KernelSize, Stride, Padding, CountIncludePad);
    }

    /// <inheritdoc/>
    protected override string ExtraRepr()
        => $"kernel_size={MaxPool2d.Pair(KernelSize)}, stride={MaxPool2d.Pair(Stride)}, padding={MaxPool2d.Pair(Padding)}";
}

/// <summary>torch.nn.AdaptiveAvgPool2d: [N, C, H, W] → [N, C, oH, oW]; see <see cref="Tensor.AdaptiveAvgPool2d"/>.</summary>
public sealed class AdaptiveAvgPool2d : Module
{
    /// <summary>Square output.</summary>
    public AdaptiveAvgPool2d(long outputSize) : this((outputSize, outputSize)) { }

    /// <summary>(oH, oW) output.</summary>
    public AdaptiveAvgPool2d((long H, long W) outputSize)
    {
        if (outputSize.H < 1 || outputSize.W < 1)
            throw new ArgumentException($"AdaptiveAvgPool2d: output size must be positive, got ({outputSize.H}, {outputSize.W}).");
        OutputSize = outputSize;
    }

    /// <summary>(oH, oW).</summary>
    public (long H, long W) OutputSize { get; }

    /// <inheritdoc/>
    public override Tensor Forward(Tensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        if (input.Rank != 4) throw new ArgumentException($"{Describe()}: expected input of shape [N, C, H, W], got {ShapeUtil.Format(input.Shape)}.");
        return input.AdaptiveAvgPool2d(OutputSize.H, OutputSize.W);
    }

    /// <inheritdoc/>
    protected override string ExtraRepr() => $"output_size={(OutputSize.H == OutputSize.W ? OutputSize.H.ToString(System.Globalization.CultureInfo.InvariantCulture) : $"({OutputSize.H}, {OutputSize.W})")}";
}
