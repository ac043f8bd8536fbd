using System.Collections;
using System.Globalization;

namespace Engine.Tensors.NN;

/// <summary>
/// torch.nn.Sequential: applies its modules in order; children are named "0", "1", ... so parameter names
/// read "0.weight", "3.running_mean" as in PyTorch. Intermediate results are disposed as soon as the next
/// module has consumed them (the autograd graph keeps what it needs).
/// </summary>
public sealed class Sequential : Module, IEnumerable<Module>
{
    private readonly List<Module> _layers = [];

    /// <summary>A container of <paramref name="modules"/>, in order.</summary>
    public Sequential(params Module[] modules)
    {
        ArgumentNullException.ThrowIfNull(modules);
        foreach (var m in modules) Append(m);
    }

    /// <summary>Adds <paramref name="module"/> at the end (named by its position). Returns this container.</summary>
    public Sequential Append(Module module)
    {
        RegisterModule(_layers.Count.ToString(CultureInfo.InvariantCulture), module);
        _layers.Add(module);
        return this;
    }

    /// <summary>The module at <paramref name="index"/> (negative counts from the end).</summary>
    public Module this[int index]
    {
        get
        {
            int i = index < 0 ? index + _layers.Count : index;
            if (i < 0 || i >= _layers.Count)
                throw new ArgumentOutOfRangeException(nameof(index), $"Sequential: index {index} is out of range for {_layers.Count} modules.");
            return _layers[i];
        }
    }

    /// <summary>Number of modules.</summary>
    public int Count => _layers.Count;

    /// <inheritdoc/>
    public override Tensor Forward(Tensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        var x = input.Alias();
        foreach (var layer in _layers)
        {
            var y = layer.Forward(x);
            if (!ReferenceEquals(y, x)) x.Dispose();
            x = y;
        }
        return x;
    }

    /// <inheritdoc/>
    public IEnumerator<Module> GetEnumerator() => _layers.GetEnumerator();

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();
}
