using Engine.Tensors;

namespace Engine.Distillation.LanguageModel;

/// <summary>
/// The keys and values of the positions a <see cref="DecoderTransformer"/> has decoded so far, per block:
/// [B, H, t, d/H] each, for incremental decoding with <see cref="DecoderTransformer.DecodeStep"/>. Owns its
/// tensors (kept out of dispose scopes); dispose it when the sequences are done.
/// </summary>
public sealed class KeyValueCache : IDisposable
{
    private readonly Tensor?[] _keys;
    private readonly Tensor?[] _values;

    /// <summary>An empty cache for a model of <paramref name="layers"/> blocks.</summary>
    public KeyValueCache(int layers)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(layers);
        _keys = new Tensor?[layers];
        _values = new Tensor?[layers];
    }

    /// <summary>Positions decoded so far (the position the next <see cref="DecoderTransformer.DecodeStep"/> reads).</summary>
    public int Length { get; internal set; }

    /// <summary>Appends this step's keys and values [B, H, 1, d/H] of block <paramref name="layer"/>; returns all of them [B, H, t+1, d/H].</summary>
    internal (Tensor Keys, Tensor Values) Append(int layer, Tensor keys, Tensor values)
    {
        _keys[layer] = Grow(_keys[layer], keys);
        _values[layer] = Grow(_values[layer], values);
        return (_keys[layer]!, _values[layer]!);
    }

    private static Tensor Grow(Tensor? old, Tensor step)
    {
        var next = old is null ? step.Contiguous() : Tensor.Cat([old, step], 2);
        next.DetachFromDisposeScope();
        old?.Dispose();
        return next;
    }

    /// <summary>Releases the cached tensors.</summary>
    public void Dispose()
    {
        for (int l = 0; l < _keys.Length; l++)
        {
            _keys[l]?.Dispose();
            _values[l]?.Dispose();
            _keys[l] = _values[l] = null;
        }
    }
}
