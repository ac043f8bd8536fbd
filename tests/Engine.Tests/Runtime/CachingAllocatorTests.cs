using Engine.Runtime;

namespace Engine.Tests.Runtime;

/// <summary>The caching logic every device allocator shares, on a fake backend with a fixed capacity.</summary>
public sealed class CachingAllocatorTests
{
    /// <summary>Hands out increasing fake handles until <see cref="Capacity"/> bytes are out; then reports out of memory (0).</summary>
    private sealed class FakeAllocator(long capacity) : CachingAllocator
    {
        private ulong _next;
        public long Capacity { get; } = capacity;
        public long Outstanding { get; private set; }
        public int RawAllocations { get; private set; }
        public List<ulong> Freed { get; } = [];

        protected override string Name => "fake allocator";

        protected override ulong AllocateBlock(long bytes)
        {
            if (Outstanding + bytes > Capacity) return 0;
            Outstanding += bytes;
            RawAllocations++;
            return ++_next;
        }

        protected override void FreeBlock(ulong handle, long bytes)
        {
            Outstanding -= bytes;
            Freed.Add(handle);
        }

        public ulong Take(long bytes, out long block) => Rent(bytes, out block);
        public void Give(ulong handle, long block) => Return(handle, block);
        public void Shutdown() => Close();
    }

    [Fact]
    public void ReusesBlocksBySizeClass_AndTracksCurrentPeakAndCached()
    {
        var memory = new FakeAllocator(1 << 30);
        ulong a = memory.Take(100, out long blockA);
        Assert.Equal(128, blockA);
        ulong b = memory.Take(3 << 20, out long blockB);
        Assert.Equal(3 << 20, blockB);
        Assert.Equal(128 + (3 << 20), memory.CurrentBytes);
        memory.Give(a, blockA);
        Assert.Equal(128, memory.CachedBytes);
        Assert.Equal(a, memory.Take(65, out _)); // same class (128): the cached block, no new raw allocation
        Assert.Equal(2, memory.RawAllocations);
        Assert.NotEqual(a, memory.Take(200, out _)); // another class: a new block
        Assert.Equal(128 + (3 << 20) + 256, memory.PeakBytes);
        memory.Give(b, blockB);
        memory.ResetPeak();
        Assert.Equal(128 + 256, memory.PeakBytes);
        memory.EmptyCache();
        Assert.Equal([b], memory.Freed);
        Assert.Equal(0, memory.CachedBytes);
    }

    [Fact]
    public void OutOfMemory_EmptiesTheCacheAndRetries_ThenThrowsNamingTheAllocator()
    {
        var memory = new FakeAllocator(4096);
        ulong a = memory.Take(2048, out long block);
        memory.Give(a, block); // cached: 2048 of the 4096 stay taken from the backend
        ulong big = memory.Take(4096, out long bigBlock); // fails once, frees the cache, succeeds
        Assert.Equal([a], memory.Freed);
        Assert.Equal(4096, memory.CurrentBytes);
        var e = Assert.Throws<OutOfMemoryException>(() => memory.Take(64, out _));
        Assert.Contains("fake allocator", e.Message);
        Assert.Contains("64 bytes", e.Message);
        Assert.Equal(4096, memory.CurrentBytes); // the failed request is not counted
        memory.Give(big, bigBlock);
    }

    [Fact]
    public void CacheLimitAndClose_SendBlocksBackToTheBackend()
    {
        var memory = new FakeAllocator(1 << 20) { CacheLimitBytes = 256 };
        ulong a = memory.Take(256, out long blockA), b = memory.Take(256, out long blockB);
        memory.Give(a, blockA);
        memory.Give(b, blockB); // over the limit: freed at once
        Assert.Equal([b], memory.Freed);
        Assert.Equal(256, memory.CachedBytes);
        ulong c = memory.Take(10, out long blockC);
        memory.Shutdown(); // frees the cache; later returns are freed too
        Assert.Equal([b, a], memory.Freed);
        memory.Give(c, blockC);
        Assert.Equal([b, a, c], memory.Freed);
        Assert.Equal(0, memory.Outstanding);
        Assert.Equal(64, CachingAllocator.SizeClass(0));
        Assert.Equal(4 << 20, CachingAllocator.SizeClass((3 << 20) + 1));
    }
}
