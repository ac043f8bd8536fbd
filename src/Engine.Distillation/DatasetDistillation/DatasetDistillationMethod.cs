using Engine.Tensors;
using Engine.Tensors.Optim;

namespace Engine.Distillation.DatasetDistillation;

/// <summary>
/// A dataset-distillation method: each <see cref="Step"/> is one outer iteration that computes the
/// method's objective as a function of the synthetic images (and, for trajectory matching, of the
/// synthetic learning rate), back-propagates it to them and updates them with SGD.
/// </summary>
public interface IDatasetDistillationMethod : IDisposable
{
    /// <summary>Short name ("dm", "dc", "mtt").</summary>
    string Name { get; }

    /// <summary>The set being distilled.</summary>
    SyntheticSet Synthetic { get; }

    /// <summary>Runs outer iteration <paramref name="iteration"/> (0-based) and returns its objective (before the update).</summary>
    double Step(int iteration);
}

/// <summary>
/// What the three methods share: the real images, the synthetic set, the network shape, the random
/// sources (a <see cref="System.Random"/> for batches and a Philox <see cref="Generator"/> for network
/// initializations, both from one seed) and SGD with momentum on the synthetic images (the optimizer of
/// the original implementations).
/// </summary>
public abstract class DatasetDistillationMethod : IDatasetDistillationMethod
{
    private readonly SGD _imageOptimizer;

    /// <summary>Sets up SGD(<paramref name="imageLearningRate"/>, <paramref name="momentum"/>) on the synthetic images.</summary>
    protected DatasetDistillationMethod(string name, ConvNetSpec spec, ClassImages real, SyntheticSet synthetic, double imageLearningRate, double momentum, ulong seed)
    {
        ArgumentNullException.ThrowIfNull(spec);
        ArgumentNullException.ThrowIfNull(real);
        ArgumentNullException.ThrowIfNull(synthetic);
        spec.Validate();
        if (real.Classes != synthetic.Classes || real.Classes != spec.Classes)
            throw new ArgumentException($"{name}: the real data has {real.Classes} classes, the synthetic set {synthetic.Classes} and the network {spec.Classes}; they must agree.");
        if (real.Images.DType != synthetic.Images.DType)
            throw new ArgumentException($"{name}: real images are {real.Images.DType.Name()} but synthetic images are {synthetic.Images.DType.Name()}.");
        if (!(imageLearningRate > 0)) throw new ArgumentException($"{name}: the image learning rate must be positive, got {imageLearningRate}.");
        Name = name;
        Spec = spec;
        Real = real;
        Synthetic = synthetic;
        Rng = new Random(unchecked((int)(seed * 2654435761UL % int.MaxValue)));
        NetGenerator = new Generator(seed ^ 0x5DEECE66DUL);
        _imageOptimizer = new SGD([synthetic.Images], imageLearningRate, momentum: momentum);
    }

    /// <inheritdoc/>
    public string Name { get; }

    /// <summary>The network shape.</summary>
    public ConvNetSpec Spec { get; }

    /// <summary>The real images, by class.</summary>
    public ClassImages Real { get; }

    /// <inheritdoc/>
    public SyntheticSet Synthetic { get; }

    /// <summary>Draws real batches.</summary>
    protected Random Rng { get; }

    /// <summary>Draws network initializations.</summary>
    protected Generator NetGenerator { get; }

    /// <inheritdoc/>
    public abstract double Step(int iteration);

    /// <summary>
    /// Adds d<paramref name="objective"/>/d(synthetic images) to the images' gradient (only the images:
    /// network parameters that require grad get nothing, so no work is spent on them). Called once per
    /// class term, so each class's graph can be freed before the next is built.
    /// </summary>
    protected void AccumulateImageGradient(Tensor objective)
    {
        var g = Autograd.Grad([objective], [Synthetic.Images], allowUnused: true)[0];
        if (g is null) return;
        AddGradient(Synthetic.Images, g);
    }

    /// <summary>Adds <paramref name="g"/> to <paramref name="leaf"/>.Grad (taking ownership of <paramref name="g"/>).</summary>
    protected static void AddGradient(Tensor leaf, Tensor g)
    {
        using (Tensor.NoGrad())
        {
            if (leaf.Grad is null) leaf.Grad = g;
            else
            {
                var sum = leaf.Grad.Add(g);
                g.Dispose();
                leaf.Grad = sum;
            }
        }
    }

    /// <summary>One SGD step on the synthetic images from their accumulated gradient, then clears it.</summary>
    protected void UpdateImages()
    {
        _imageOptimizer.Step();
        _imageOptimizer.ZeroGrad();
    }

    /// <summary>Frees the optimizer state (the real and synthetic sets belong to the caller).</summary>
    public void Dispose()
    {
        Dispose(true);
        GC.SuppressFinalize(this);
    }

    /// <summary>Releases what the method owns; override to release more (call the base).</summary>
    protected virtual void Dispose(bool disposing)
    {
        if (disposing) _imageOptimizer.Dispose();
    }

    /// <summary>Disposes every tensor of <paramref name="parameters"/>.</summary>
    protected static void DisposeAll(IEnumerable<Tensor> parameters)
    {
        foreach (var p in parameters) p.Dispose();
    }
}
