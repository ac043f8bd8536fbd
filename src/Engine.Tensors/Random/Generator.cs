namespace Engine.Tensors;

// The random-number types live in namespace Engine.Tensors (not Engine.Tensors.Random): a namespace
// named Random would hide System.Random for every file under Engine.Tensors.

/// <summary>
/// A seeded source of random numbers for tensor factories (<see cref="Tensor.Rand"/>,
/// <see cref="Tensor.Randn"/>, ...), built on the counter-based Philox4x32-10 generator.
/// <para>
/// State is two 64-bit numbers: the <see cref="Seed"/> (the Philox key) and the <see cref="Offset"/>.
/// A draw of n elements that uses B Philox blocks reads the counters (block b, <see cref="Offset"/>)
/// for b = 0..B-1 and then advances <see cref="Offset"/> by B. So element i of a draw depends only on
/// (seed, offset, i): the numbers are the same on every machine and for every thread count, and
/// two draws never share a counter. Saving <see cref="GetState"/> and restoring it with
/// <see cref="SetState"/> replays the same numbers (checkpoints).
/// </para>
/// <para>Thread-safe: concurrent draws from one generator get disjoint counter ranges (in an order that
/// depends on the race, so use one generator per thread when the order matters).</para>
/// </summary>
public sealed class Generator
{
    private readonly Lock _lock = new();
    private ulong _seed;
    private ulong _offset;

    /// <summary>A generator with key <paramref name="seed"/> and offset 0.</summary>
    public Generator(ulong seed) => _seed = seed;

    /// <summary>
    /// The process-wide generator the factories use when none is passed: seeded 0 at start-up,
    /// re-seeded by <see cref="ManualSeed"/> or <see cref="Tensor.ManualSeed"/>.
    /// </summary>
    public static Generator Default { get; } = new(0);

    /// <summary>Re-seeds <see cref="Default"/>: seed <paramref name="seed"/>, offset 0.</summary>
    public static void ManualSeed(ulong seed) => Default.Reseed(seed);

    /// <summary>The Philox key.</summary>
    public ulong Seed { get { lock (_lock) return _seed; } }

    /// <summary>The counter offset the next draw starts at (advanced by the Philox blocks each draw uses).</summary>
    public ulong Offset { get { lock (_lock) return _offset; } }

    /// <summary>Sets the seed to <paramref name="seed"/> and the offset to 0. Returns this generator.</summary>
    public Generator Reseed(ulong seed)
    {
        lock (_lock) { _seed = seed; _offset = 0; }
        return this;
    }

    /// <summary>The current (seed, offset), for checkpoints.</summary>
    public GeneratorState GetState() { lock (_lock) return new GeneratorState(_seed, _offset); }

    /// <summary>Restores a state saved by <see cref="GetState"/>: later draws repeat the ones made after it was saved.</summary>
    public void SetState(GeneratorState state) { lock (_lock) { _seed = state.Seed; _offset = state.Offset; } }

    /// <summary>Reserves <paramref name="blocks"/> Philox blocks: returns (seed, the offset to draw at) and advances the offset.</summary>
    internal (ulong Seed, ulong Offset) Reserve(ulong blocks)
    {
        lock (_lock)
        {
            var start = _offset;
            _offset = unchecked(_offset + blocks);
            return (_seed, start);
        }
    }

    /// <inheritdoc />
    public override string ToString() => $"Generator(seed={Seed}, offset={Offset})";
}

/// <summary>A <see cref="Generator"/>'s whole state: the Philox key and the counter offset.</summary>
/// <param name="Seed">The Philox key.</param>
/// <param name="Offset">The offset the next draw starts at.</param>
public readonly record struct GeneratorState(ulong Seed, ulong Offset);
