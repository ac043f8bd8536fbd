using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Engine.Distillation;
using Xunit;

namespace Engine.Tests.Distillation;

/// <summary>
/// The fused rows' exps (<see cref="ISimd{TV}.Exp2"/>) against float64 2^y, on every vector width the
/// machine has: accuracy in ulps from the denormals up to 2^127, exact 0 for −∞ (a masked class), +∞ past 2^128, NaN kept.
/// </summary>
public class FastExpTests
{
    private static float[] Inputs()
    {
        var rng = new Random(TestUtil.StableSeed("exp2"));
        var xs = new List<float> { 0f, -0f, -1f, -0.5f, -1e-8f, -126f, -126.5f, -149f, -149.9f, -150f, -200f, -1e30f, float.MinValue };
        for (int i = 0; i < 20000; i++) xs.Add(-(float)(rng.NextDouble() * 30));   // where probabilities live
        for (int i = 0; i < 2000; i++) xs.Add(-(float)(rng.NextDouble() * 160));  // down through the denormals
        for (int i = 0; i < 2000; i++) xs.Add((float)(rng.NextDouble() * 127));   // exps against a reference below the max
        xs.AddRange([1f, 63.5f, 64f, 126.99f]);
        while (xs.Count % 16 != 0) xs.Add(-3.25f);
        return [.. xs];
    }

    private static void Check(string what, float[] xs, float[] got)
    {
        double worstUlp = 0;
        for (int i = 0; i < xs.Length; i++)
        {
            double want = Math.Pow(2, xs[i]);
            if (want < 1.1754943508222875e-38)
            {
                // Below float32's normal range: a denormal or 0 (the Cephes paths flush there), never more than 2^−126 off.
                Assert.True(got[i] >= 0 && Math.Abs(got[i] - want) <= 1.1754943508222875e-38, $"{what}: 2^{xs[i]} = {want:g9}, got {got[i]:g9}");
                continue;
            }
            double ulp = Math.Abs(got[i] - want) / ((double)MathF.BitIncrement((float)want) - (float)want);
            worstUlp = Math.Max(worstUlp, ulp);
            Assert.True(ulp <= 2.5, $"{what}: 2^{xs[i]} = {want:r}, got {got[i]:r} ({ulp:f2} ulp)");
        }
        Assert.True(worstUlp > 0, $"{what}: no input was compared");
    }

    private static unsafe float[] Run<TV, TS>(float[] xs) where TV : struct where TS : ISimd<TV>
    {
        var got = new float[xs.Length];
        var c = TS.Exp2Setup();
        fixed (float* px = xs, pg = got)
            for (int i = 0; i < xs.Length; i += TS.Count) TS.Store(pg + i, TS.Exp2(TS.Load(px + i), c));
        return got;
    }

    [Fact]
    public void Exp2_Within2Ulp_OnEveryWidth()
    {
        var xs = Inputs();
        Check("scalar", xs, Run<float, Simd1>(xs));
        if (Vector256.IsHardwareAccelerated) Check("256-bit", xs, Run<Vector256<float>, Simd256>(xs));
        else Console.WriteLine("FastExpTests: no 256-bit vectors on this machine; the 256-bit path is not checked here");
        if (Vector512.IsHardwareAccelerated) Check(Avx512DQ.IsSupported ? "512-bit (vreduceps/vscalefps)" : "512-bit", xs, Run<Vector512<float>, Simd512>(xs));
        else Console.WriteLine("FastExpTests: no 512-bit vectors on this machine; the AVX-512 path is not checked here");
    }

    [Fact]
    public void Exp2_MinusInfinityIsZero_NaNStaysNaN_OverflowIsInfinity()
    {
        var xs = new float[16];
        Array.Fill(xs, float.NegativeInfinity);
        xs[3] = float.NaN;
        xs[5] = 128f;
        xs[6] = 1e30f;
        xs[7] = float.PositiveInfinity;
        foreach (var (what, got) in new[] { ("scalar", Run<float, Simd1>(xs)), ("256-bit", Vector256.IsHardwareAccelerated ? Run<Vector256<float>, Simd256>(xs) : null),
                     ("512-bit", Vector512.IsHardwareAccelerated ? Run<Vector512<float>, Simd512>(xs) : null) })
        {
            if (got is null) continue;
            for (int i = 0; i < xs.Length; i++)
                if (i == 3) Assert.True(float.IsNaN(got[i]), $"{what}: 2^NaN gave {got[i]}");
                else if (i is 5 or 6 or 7) Assert.True(float.IsPositiveInfinity(got[i]), $"{what}: 2^{xs[i]} gave {got[i]}");
                else Assert.True(got[i] == 0 && !float.IsNegative(got[i]), $"{what}: 2^−∞ gave {got[i]}");
        }
    }
}
