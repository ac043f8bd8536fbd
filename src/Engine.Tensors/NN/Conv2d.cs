namespace Engine.Tensors.NN;

/// <summary>
/// torch.nn.Conv2d over NCHW input: weight [out_channels, in_channels/groups, kH, kW], bias [out_channels],
/// with stride, zero padding, dilation and groups (see <see cref="Tensor.Conv2d"/>). Initialized as PyTorch
/// does: weight and bias uniform on ±1/√fan_in, fan_in = in_channels/groups·kH·kW.
/// </summary>
public sealed class Conv2d : Module
{
    /// <summary>A layer with square kernel, stride, padding and dilation.</summary>
    public Conv2d(long inChannels, long outChannels, int kernelSize, int stride = 1, int padding = 0, int dilation = 1, int groups = 1, bool bias = true, Generator? generator = null)
        : this(inChannels, outChannels, (kernelSize, kernelSize), (stride, stride), (padding, padding), (dilation, dilation), groups, bias, generator)
    {
    }

    /// <summary>A layer with (height, width) kernel, stride, padding and dilation.</summary>
    public Conv2d(long inChannels, long outChannels, (int H, int W) kernelSize, (int H, int W)? stride = null, (int H, int W)? padding = null, (int H, int W)? dilation = null,
        int groups = 1, bool bias = true, Generator? generator = null)
    {
        if (inChannels < 1 || outChannels < 1 || groups < 1 || inChannels % groups != 0 || outChannels % groups != 0)
            throw new ArgumentException(
                $"Conv2d: in_channels ({inChannels}) and out_channels ({outChannels}) must be positive multiples of groups ({groups}).");
        _ = ConvGeometry.Create("Conv2d", kernelSize, stride, padding, dilation); // validates
        InChannels = inChannels;
        OutChannels = outChannels;
        KernelSize = kernelSize;
        Stride = stride ?? (1, 1);
        Padding = padding ?? (0, 0);
        Dilation = dilation ?? (1, 1);
        Groups = groups;
        var w = RegisterParameter("weight", Tensor.Empty([outChannels, inChannels / groups, kernelSize.H, kernelSize.W]))!;
        var b = RegisterParameter("bias", bias ? Tensor.Empty([outChannels]) : null);
        Init.DefaultLayerInit(w, b, generator);
    }

    /// <summary>Channels of the input.</summary>
    public long InChannels { get; }

    /// <summary>Channels of the output.</summary>
    public long OutChannels { get; }

    /// <summary>(kH, kW).</summary>
    public (int H, int W) KernelSize { get; }

    /// <summary>(strideH, strideW).</summary>
    public (int H, int W) Stride { get; }

    /// <summary>Zero padding on each side (padH, padW).</summary>
    public (int H, int W) Padding { get; }

    /// <summary>Spacing between kernel taps.</summary>
    public (int H, int W) Dilation { get; }

    /// <summary>Number of channel groups (in/groups input channels feed out/groups output channels).</summary>
    public int Groups { get; }

    /// <summary>Weight [out_channels, in_channels/groups, kH, kW].</summary>
    public Tensor Weight => GetParameter("weight")!;

    /// <summary>Bias [out_channels], or null.</summary>
    public Tensor? Bias => GetParameter("bias");

    /// <inheritdoc/>
    public override Tensor Forward(Tensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        if (input.Rank != 4 || input.Shape[1] != InChannels)
            throw new ArgumentException($"{Describe()}: expected input of shape [N, {InChannels}, H, W], got {ShapeUtil.Format(input.Shape)}.");
        if (input.DType != Weight.DType)
            throw new ArgumentException($"{Describe()}: input is {input.DType.Name()} but the weight is {Weight.DType.Name()}; convert one of them (Module.To or Tensor.To).");
        long kh = (long)Dilation.H * (KernelSize.H - 1) + 1, kw = (long)Dilation.W * (KernelSize.W - 1) + 1;
        if (input.Shape[2] + 2L * Padding.H < kh || input.Shape[3] + 2L * Padding.W < kw)
            throw new ArgumentException(
                $"{Describe()}: input {ShapeUtil.Format(input.Shape)} padded by ({Padding.H}, {Padding.W}) is smaller than the (dilated) kernel {kh}×{kw}.");
        return input.Conv2d(Weight, Bias, Stride, Padding, Dilation, Groups);
    }

    /// <inheritdoc/>
    protected override string ExtraRepr()
    {
        var s = $"{InChannels}, {OutChannels}, kernel_size=({KernelSize.H}, {KernelSize.W}), stride=({Stride.H}, {Stride.W})";
        if (Padding != (0, 0)) s += $", padding=({Padding.H}, {Padding.W})";
        if (Dilation != (1, 1)) s += $", dilation=({Dilation.H}, {Dilation.W})";
        if (Groups != 1) s += $", groups={Groups}";
        if (Bias is null) s += ", bias=False";
        return s;
    }
}
