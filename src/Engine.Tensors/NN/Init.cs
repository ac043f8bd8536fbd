namespace Engine.Tensors.NN;

/// <summary>Which fan a Kaiming initialization scales by (PyTorch's mode="fan_in" / "fan_out").</summary>
public enum FanMode
{
    /// <summary>Preserves the variance of activations in the forward pass.</summary>
    FanIn,

    /// <summary>Preserves the variance of gradients in the backward pass.</summary>
    FanOut,
}

/// <summary>
/// Weight initializations of torch.nn.init, seeded by a <see cref="Generator"/> (null: <see cref="Generator.Default"/>).
/// Each fills the tensor in place (without recording a graph) and returns it.
/// Fans follow PyTorch: for a weight [out, in, k...], fan_in = in·∏k and fan_out = out·∏k.
/// </summary>
public static class Init
{
    /// <summary>(fan_in, fan_out) of a weight of rank ≥ 2, as torch.nn.init._calculate_fan_in_and_fan_out.</summary>
    public static (long FanIn, long FanOut) Fans(Tensor tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        if (tensor.Rank < 2)
            throw new ArgumentException($"Init: fan in and fan out need a tensor of at least 2 dims, got shape {ShapeUtil.Format(tensor.Shape)}.");
        long receptive = 1;
        for (int d = 2; d < tensor.Rank; d++) receptive *= tensor.Shape[d];
        return (tensor.Shape[1] * receptive, tensor.Shape[0] * receptive);
    }

    /// <summary>
    /// torch.nn.init.calculate_gain: 1 for "linear"/"conv*"/"sigmoid", 5/3 for "tanh", √2 for "relu",
    /// √(2 / (1 + a²)) for "leaky_relu" (a = <paramref name="param"/>, default 0.01), 3/4 for "selu".
    /// </summary>
    public static double Gain(string nonlinearity, double? param = null) => nonlinearity switch
    {
        "linear" or "conv1d" or "conv2d" or "conv3d" or "conv_transpose1d" or "conv_transpose2d" or "conv_transpose3d" or "sigmoid" => 1.0,
        "tanh" => 5.0 / 3,
        "relu" => Math.Sqrt(2.0),
        "leaky_relu" => Math.Sqrt(2.0 / (1 + Math.Pow(param ?? 0.01, 2))),
        "selu" => 3.0 / 4,
        _ => throw new ArgumentException($"Init.Gain: unsupported nonlinearity '{nonlinearity}'."),
    };

    /// <summary>
    /// torch.nn.init.kaiming_uniform_: U(−b, b) with b = gain·√(3 / fan), gain = <see cref="Gain"/>(nonlinearity, a).
    /// PyTorch's default for Linear and Conv2d weights is a = √5 (which gives b = 1/√fan_in).
    /// </summary>
    public static Tensor KaimingUniform(Tensor tensor, double a = 0, FanMode mode = FanMode.FanIn, string nonlinearity = "leaky_relu", Generator? generator = null)
    {
        double bound = Gain(nonlinearity, a) * Math.Sqrt(3.0 / Fan(tensor, mode, "KaimingUniform"));
        return Uniform(tensor, -bound, bound, generator);
    }

    /// <summary>torch.nn.init.kaiming_normal_: N(0, std²) with std = gain / √fan.</summary>
    public static Tensor KaimingNormal(Tensor tensor, double a = 0, FanMode mode = FanMode.FanIn, string nonlinearity = "leaky_relu", Generator? generator = null)
    {
        double std = Gain(nonlinearity, a) / Math.Sqrt(Fan(tensor, mode, "KaimingNormal"));
        return Normal(tensor, 0, std, generator);
    }

    /// <summary>torch.nn.init.xavier_uniform_: U(−b, b) with b = gain·√(6 / (fan_in + fan_out)).</summary>
    public static Tensor XavierUniform(Tensor tensor, double gain = 1, Generator? generator = null)
    {
        var (fanIn, fanOut) = Fans(tensor);
        double bound = gain * Math.Sqrt(6.0 / Math.Max(1, fanIn + fanOut));
        return Uniform(tensor, -bound, bound, generator);
    }

    /// <summary>torch.nn.init.xavier_normal_: N(0, std²) with std = gain·√(2 / (fan_in + fan_out)).</summary>
    public static Tensor XavierNormal(Tensor tensor, double gain = 1, Generator? generator = null)
    {
        var (fanIn, fanOut) = Fans(tensor);
        double std = gain * Math.Sqrt(2.0 / Math.Max(1, fanIn + fanOut));
        return Normal(tensor, 0, std, generator);
    }

    /// <summary>torch.nn.init.uniform_: U(<paramref name="lo"/>, <paramref name="hi"/>).</summary>
    public static Tensor Uniform(Tensor tensor, double lo = 0, double hi = 1, Generator? generator = null)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        using (Tensor.NoGrad()) tensor.Uniform_(lo, hi, generator);
        return tensor;
    }

    /// <summary>torch.nn.init.normal_: N(<paramref name="mean"/>, <paramref name="std"/>²).</summary>
    public static Tensor Normal(Tensor tensor, double mean = 0, double std = 1, Generator? generator = null)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        using (Tensor.NoGrad()) tensor.Normal_(mean, std, generator);
        return tensor;
    }

    /// <summary>torch.nn.init.constant_.</summary>
    public static Tensor Constant(Tensor tensor, double value)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        using (Tensor.NoGrad()) tensor.Fill_(value);
        return tensor;
    }

    /// <summary>torch.nn.init.zeros_.</summary>
    public static Tensor Zeros(Tensor tensor) => Constant(tensor, 0);

    /// <summary>torch.nn.init.ones_.</summary>
    public static Tensor Ones(Tensor tensor) => Constant(tensor, 1);

    /// <summary>
    /// PyTorch's default initialization of a Linear or Conv2d layer (reset_parameters): weight by
    /// kaiming_uniform_(a=√5), i.e. U(−1/√fan_in, 1/√fan_in), then bias U(−1/√fan_in, 1/√fan_in)
    /// (drawn in that order from <paramref name="generator"/>).
    /// </summary>
    internal static void DefaultLayerInit(Tensor weight, Tensor? bias, Generator? generator)
    {
        KaimingUniform(weight, a: Math.Sqrt(5), generator: generator);
        if (bias is null) return;
        var (fanIn, _) = Fans(weight);
        double bound = fanIn > 0 ? 1 / Math.Sqrt(fanIn) : 0;
        Uniform(bias, -bound, bound, generator);
    }

    private static long Fan(Tensor tensor, FanMode mode, string op)
    {
        var (fanIn, fanOut) = Fans(tensor);
        long fan = mode == FanMode.FanIn ? fanIn : fanOut;
        if (fan == 0) throw new ArgumentException($"Init.{op}: the tensor of shape {ShapeUtil.Format(tensor.Shape)} has a zero fan ({mode}).");
        return fan;
    }
}
