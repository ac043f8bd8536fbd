using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Engine.Benchmarks;

/// <summary>
/// A parallel copy of n floats between two preallocated, already-touched buffers, one contiguous
/// part per thread: <see cref="Buffer.MemoryCopy"/>, or a vector loop with non-temporal stores.
/// </summary>
public sealed unsafe class Copier : IDisposable
{
    private readonly byte* _src, _dst;
    private readonly long _bytes, _per;
    private readonly int _parts;
    private readonly ParallelOptions _options;

    /// <summary>Allocates and touches two buffers of <paramref name="n"/> floats, copied by <paramref name="threads"/> threads.</summary>
    public Copier(long n, int threads)
    {
        _bytes = n * sizeof(float);
        _src = (byte*)NativeMemory.AlignedAlloc((nuint)_bytes, 64);
        _dst = (byte*)NativeMemory.AlignedAlloc((nuint)_bytes, 64);
        NativeMemory.Fill(_src, (nuint)_bytes, 1);
        NativeMemory.Clear(_dst, (nuint)_bytes);
        _parts = threads;
        _per = (_bytes / _parts + 63) / 64 * 64;
        _options = new ParallelOptions { MaxDegreeOfParallelism = threads };
    }

    /// <summary>One timed copy (ms); <paramref name="nonTemporal"/>: streaming stores instead of <see cref="Buffer.MemoryCopy"/>.</summary>
    public double TimeMs(bool nonTemporal)
    {
        var sw = Stopwatch.StartNew();
        Parallel.For(0, _parts, _options, p => CopyPart(p, nonTemporal));
        return sw.Elapsed.TotalMilliseconds;
    }

    private void CopyPart(int part, bool nonTemporal)
    {
        long start = part * _per, count = Math.Min(_per, _bytes - start);
        if (count <= 0) return;
        byte* from = _src + start, to = _dst + start;
        if (!nonTemporal) { Buffer.MemoryCopy(from, to, count, count); return; }
        long i = 0;
        if (Vector512.IsHardwareAccelerated)
            for (; i + 64 <= count; i += 64) Vector512.StoreAlignedNonTemporal(Vector512.LoadAligned(from + i), to + i);
        else
            for (; i + 32 <= count; i += 32) Vector256.StoreAlignedNonTemporal(Vector256.LoadAligned(from + i), to + i);
        for (; i < count; i++) to[i] = from[i];
    }

    /// <summary>Checks that the copies copied (every 4 KB page of the destination).</summary>
    public void Check()
    {
        for (long i = 0; i < _bytes; i += 4096)
            if (_dst[i] != 1) throw new InvalidOperationException($"copy: byte {i} was not copied");
    }

    /// <inheritdoc />
    public void Dispose()
    {
        NativeMemory.AlignedFree(_src);
        NativeMemory.AlignedFree(_dst);
    }
}
