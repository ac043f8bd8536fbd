namespace Engine.Tensors.NN.Models;

/// <summary>
/// A model that exposes named intermediate activations (stage features) for feature-based
/// distillation (FitNets hints, attention transfer, relational KD).
/// </summary>
public interface IFeatureModel
{
    /// <summary>The names <see cref="ForwardFeatures"/> returns, from the input side to the output side.</summary>
    IReadOnlyList<string> FeatureNames { get; }

    /// <summary>
    /// The forward pass (same output as <see cref="Module.Forward"/>) that also returns the named stage
    /// features, still connected to the autograd graph.
    /// </summary>
    FeatureOutput ForwardFeatures(Tensor input);
}

/// <summary>
/// The output of <see cref="IFeatureModel.ForwardFeatures"/>: the logits and the named stage features
/// in forward order. Disposing it disposes all of them (or let a dispose scope own them).
/// </summary>
public sealed class FeatureOutput : IDisposable
{
    private readonly List<(string Name, Tensor Feature)> _features;

    /// <summary>Wraps <paramref name="output"/> and <paramref name="features"/> (taken over, not copied).</summary>
    public FeatureOutput(Tensor output, IEnumerable<(string Name, Tensor Feature)> features)
    {
        ArgumentNullException.ThrowIfNull(output);
        ArgumentNullException.ThrowIfNull(features);
        Output = output;
        _features = features.ToList();
    }

    /// <summary>The model's output (logits).</summary>
    public Tensor Output { get; }

    /// <summary>The stage features with their names, in forward order.</summary>
    public IReadOnlyList<(string Name, Tensor Feature)> Features => _features;

    /// <summary>The feature named <paramref name="name"/>.</summary>
    /// <exception cref="KeyNotFoundException">No such feature; the message lists the names there are.</exception>
    public Tensor this[string name]
    {
        get
        {
            foreach (var (n, f) in _features) if (n == name) return f;
            throw new KeyNotFoundException($"ForwardFeatures: no feature '{name}'; the model has: {string.Join(", ", _features.Select(f => f.Name))}.");
        }
    }

    /// <summary>Disposes the output and every feature.</summary>
    public void Dispose()
    {
        Output.Dispose();
        foreach (var (_, f) in _features) f.Dispose();
    }
}
