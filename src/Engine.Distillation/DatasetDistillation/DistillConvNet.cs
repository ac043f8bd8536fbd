using Engine.Tensors;
using Engine.Tensors.NN;

namespace Engine.Distillation.DatasetDistillation;

/// <summary>Normalization after each convolution of <see cref="DistillConvNet"/>.</summary>
public enum ConvNetNorm
{
    /// <summary>None: conv → ReLU → pool.</summary>
    None,

    /// <summary>
    /// Instance normalization with a learnable per-channel scale and shift (GroupNorm with one group per
    /// channel, as the ConvNet of Zhao et al.): statistics of each image's own channel plane, so no
    /// running state and no coupling between the images of a batch (unlike BatchNorm, which would mix
    /// real and synthetic images and change between the inner steps of trajectory matching).
    /// </summary>
    Instance,
}

/// <summary>
/// Shape of the small ConvNet used by dataset distillation (the "ConvNet" of the dataset-condensation
/// papers, made narrower and shallower so second-order steps run on a few CPU cores):
/// <code>
/// depth × [ conv 3×3 (padding 1, <see cref="Width"/> channels) → norm → ReLU → avg-pool 2×2 ]
/// → flatten (the embedding, <see cref="EmbeddingSize"/> features) → linear → <see cref="Classes"/> logits
/// </code>
/// </summary>
/// <param name="Channels">Input channels (1 for Fashion-MNIST).</param>
/// <param name="ImageSize">Input height and width (28).</param>
/// <param name="Classes">Output classes (10).</param>
/// <param name="Width">Channels of every conv layer.</param>
/// <param name="Depth">Conv blocks; each halves the spatial size (floor).</param>
/// <param name="Norm">Normalization after each conv.</param>
public sealed record ConvNetSpec(int Channels = 1, int ImageSize = 28, int Classes = 10, int Width = 32, int Depth = 2, ConvNetNorm Norm = ConvNetNorm.Instance)
{
    /// <summary>Spatial size after the last pooling.</summary>
    public int FinalSize
    {
        get
        {
            int s = ImageSize;
            for (int d = 0; d < Depth; d++) s /= 2;
            return s;
        }
    }

    /// <summary>Features of the embedding (flattened output of the last block): Width·FinalSize².</summary>
    public long EmbeddingSize => (long)Width * FinalSize * FinalSize;

    /// <summary>Throws unless the spec describes a network that can run.</summary>
    public void Validate()
    {
        if (Channels < 1 || ImageSize < 1 || Classes < 2 || Width < 1 || Depth < 1 || FinalSize < 1)
            throw new ArgumentException(
                $"ConvNetSpec: channels {Channels}, image size {ImageSize}, classes {Classes} (≥ 2), width {Width}, depth {Depth} must be positive " +
                $"and the image must survive {Depth} 2×2 poolings (final size {FinalSize}).");
    }
}

/// <summary>
/// The ConvNet of <see cref="ConvNetSpec"/> as a pure function of an explicit parameter list, so that
/// dataset distillation can run it with parameters that are themselves results of a graph (the unrolled
/// SGD steps of trajectory matching) or freshly sampled at every iteration (distribution and gradient
/// matching). Every op it uses (conv2d through unfold and matmul, mean/var, ReLU, avg-pool through
/// unfold, matmul) has a backward written in differentiable ops, so gradients of gradients work.
/// <para>
/// Parameter order (the list <see cref="Init"/> returns and <see cref="Forward"/> takes): for each block
/// d: conv weight [W, Cin, 3, 3], conv bias [W], and with instance norm its scale [W] and shift [W];
/// then the classifier weight [Classes, EmbeddingSize] and bias [Classes].
/// </para>
/// </summary>
public static class DistillConvNet
{
    /// <summary>Epsilon added to the variance of instance normalization (PyTorch's GroupNorm default).</summary>
    public const double NormEps = 1e-5;

    /// <summary>
    /// Fresh parameters as PyTorch initializes the layers: conv and linear weights and biases uniform on
    /// ±1/√fan_in, norm scale 1 and shift 0. Leaves that require grad, in <paramref name="dtype"/>, not
    /// in any dispose scope (the caller disposes them).
    /// </summary>
    public static Tensor[] Init(ConvNetSpec spec, Generator generator, DType dtype = DType.Float32)
    {
        ArgumentNullException.ThrowIfNull(spec);
        spec.Validate();
        var ps = new List<Tensor>();
        long cin = spec.Channels;
        for (int d = 0; d < spec.Depth; d++)
        {
            double bound = 1 / Math.Sqrt(cin * 9);
            ps.Add(Uniform([spec.Width, cin, 3, 3], bound, generator, dtype));
            ps.Add(Uniform([spec.Width], bound, generator, dtype));
            if (spec.Norm == ConvNetNorm.Instance)
            {
                ps.Add(Leaf(Tensor.Ones([spec.Width], dtype)));
                ps.Add(Leaf(Tensor.Zeros([spec.Width], dtype)));
            }
            cin = spec.Width;
        }
        double fcBound = 1 / Math.Sqrt(spec.EmbeddingSize);
        ps.Add(Uniform([spec.Classes, spec.EmbeddingSize], fcBound, generator, dtype));
        ps.Add(Uniform([spec.Classes], fcBound, generator, dtype));
        return [.. ps];
    }

    /// <summary>Number of parameter tensors <see cref="Init"/> returns for <paramref name="spec"/>.</summary>
    public static int ParameterCount(ConvNetSpec spec) => spec.Depth * (spec.Norm == ConvNetNorm.Instance ? 4 : 2) + 2;

    /// <summary>
    /// PyTorch-style names of the parameters, in order ("features.0.weight", ..., "classifier.weight"),
    /// for checkpoints of expert trajectories.
    /// </summary>
    public static string[] ParameterNames(ConvNetSpec spec)
    {
        var names = new List<string>();
        for (int d = 0; d < spec.Depth; d++)
        {
            names.Add($"features.{d}.conv.weight");
            names.Add($"features.{d}.conv.bias");
            if (spec.Norm == ConvNetNorm.Instance)
            {
                names.Add($"features.{d}.norm.weight");
                names.Add($"features.{d}.norm.bias");
            }
        }
        names.Add("classifier.weight");
        names.Add("classifier.bias");
        return [.. names];
    }

    /// <summary>The embedding [N, EmbeddingSize] of images <paramref name="x"/> [N, Channels, ImageSize, ImageSize].</summary>
    public static Tensor Embed(ConvNetSpec spec, IReadOnlyList<Tensor> parameters, Tensor x)
    {
        Check(spec, parameters, x);
        int per = spec.Norm == ConvNetNorm.Instance ? 4 : 2;
        Tensor h = x;
        for (int d = 0; d < spec.Depth; d++)
        {
            int k = d * per;
            using var conv = h.Conv2d(parameters[k], parameters[k + 1], padding: (1, 1));
            Tensor act;
            if (spec.Norm == ConvNetNorm.Instance)
            {
                using var normed = InstanceNorm(conv, parameters[k + 2], parameters[k + 3]);
                act = normed.Relu();
            }
            else act = conv.Relu();
            using (act)
            {
                var pooled = act.AvgPool2d((2, 2));
                if (!ReferenceEquals(h, x)) h.Dispose();
                h = pooled;
            }
        }
        using (h) return h.Flatten(1);
    }

    /// <summary>Logits [N, Classes] of images <paramref name="x"/> [N, Channels, ImageSize, ImageSize].</summary>
    public static Tensor Forward(ConvNetSpec spec, IReadOnlyList<Tensor> parameters, Tensor x)
    {
        using var emb = Embed(spec, parameters, x);
        using var wt = parameters[^2].T;
        using var y = emb.MatMul(wt);
        return y.Add(parameters[^1]);
    }

    /// <summary>
    /// Instance normalization of [N, C, H, W]: each (image, channel) plane minus its mean, divided by
    /// √(biased variance + <see cref="NormEps"/>), then scaled by <paramref name="weight"/>[c] and shifted
    /// by <paramref name="bias"/>[c].
    /// </summary>
    public static Tensor InstanceNorm(Tensor x, Tensor weight, Tensor bias)
    {
        long c = x.Size(1);
        using var mean = x.Mean([2, 3], keepDim: true);
        using var variance = x.Var([2, 3], keepDim: true, correction: 0);
        using var centered = x.Sub(mean);
        using var shifted = variance.Add(NormEps);
        using var inv = shifted.Rsqrt();
        using var normalized = centered.Mul(inv);
        using var w = weight.View(1, c, 1, 1);
        using var b = bias.View(1, c, 1, 1);
        using var scaled = normalized.Mul(w);
        return scaled.Add(b);
    }

    private static void Check(ConvNetSpec spec, IReadOnlyList<Tensor> parameters, Tensor x)
    {
        ArgumentNullException.ThrowIfNull(spec);
        ArgumentNullException.ThrowIfNull(parameters);
        ArgumentNullException.ThrowIfNull(x);
        if (parameters.Count != ParameterCount(spec))
            throw new ArgumentException($"DistillConvNet: {spec} takes {ParameterCount(spec)} parameter tensors, got {parameters.Count}.");
        if (x.Rank != 4 || x.Size(1) != spec.Channels || x.Size(2) != spec.ImageSize || x.Size(3) != spec.ImageSize)
            throw new ArgumentException(
                $"DistillConvNet: expected images [N, {spec.Channels}, {spec.ImageSize}, {spec.ImageSize}], got {ShapeText(x)}.");
        if (x.DType != parameters[0].DType)
            throw new ArgumentException($"DistillConvNet: images are {x.DType.Name()} but the parameters are {parameters[0].DType.Name()}.");
    }

    /// <summary>"[2, 3]" for a tensor of shape [2, 3] (for error messages).</summary>
    internal static string ShapeText(Tensor t) => "[" + string.Join(", ", t.ShapeArray()) + "]";

    private static Tensor Uniform(long[] shape, double bound, Generator generator, DType dtype)
    {
        var t = Tensor.Empty(shape, dtype);
        t.Uniform_(-bound, bound, generator);
        return Leaf(t);
    }

    private static Tensor Leaf(Tensor t)
    {
        t.DetachFromDisposeScope();
        t.RequiresGrad = true;
        return t;
    }
}
