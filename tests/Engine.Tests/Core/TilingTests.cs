using Engine.Tensors;
using Engine.Tensors.Cpu;

namespace Engine.Tests.Core;

/// <summary>The tile sizes of elementwise loops (Parallelism.TileElements, used by LoopPlan) on ops big enough to get large tiles.</summary>
public class TilingTests
{
    [Fact]
    public void TileElements_IsGrainForSmallOps_AndGrowsPastMaxTilesGrains()
    {
        Assert.Equal(Parallelism.Grain, Parallelism.TileElements(0));
        Assert.Equal(Parallelism.Grain, Parallelism.TileElements(Parallelism.Grain * Parallelism.MaxTiles));
        long big = 64L << 20;
        Assert.Equal(big / Parallelism.MaxTiles, Parallelism.TileElements(big));
        long odd = (5L << 20) + 3;
        Assert.Equal(0, Parallelism.TileElements(odd) % 1024);
        Assert.True(Parallelism.TileElements(odd) * Parallelism.MaxTiles >= odd);
    }

    [Fact]
    public void LargeAdd_MatchesScalarLoop_ContiguousStridedAndBroadcast_ForOneAndTwoThreads()
    {
        int saved = Parallelism.MaxThreads;
        try
        {
            long n = (4L << 20) + 37; // 4M+ elements: tiles of 64K+ elements, the streaming-store path
            using var a = Tensor.Rand([n], generator: new Generator(1));
            using var b = Tensor.Rand([n], generator: new Generator(2));
            var av = a.ToArray<float>();
            var bv = b.ToArray<float>();
            using var rowsT = Tensor.Rand([3, (2L << 20) + 1], generator: new Generator(3));
            using var t = rowsT.T; // [2M+1, 3], strided
            using var col = Tensor.Rand([1, 3], generator: new Generator(4));
            var tv = t.ToArray<float>();
            var cv = col.ToArray<float>();
            foreach (int threads in new[] { 1, 2 })
            {
                Parallelism.MaxThreads = threads;
                using var y = a.Add(b);
                var yv = y.ToArray<float>();
                for (long i = 0; i < n; i++)
                    if (yv[i] != av[i] + bv[i]) Assert.Fail($"threads {threads}: add element {i}: expected {av[i] + bv[i]}, got {yv[i]}");
                using var z = t.Add(col);
                var zv = z.ToArray<float>();
                for (long i = 0; i < zv.Length; i++)
                    if (zv[i] != tv[i] + cv[i % 3]) Assert.Fail($"threads {threads}: strided add element {i}: expected {tv[i] + cv[i % 3]}, got {zv[i]}");
            }
        }
        finally { Parallelism.MaxThreads = saved; }
    }
}
