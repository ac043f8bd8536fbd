using Microsoft.CodeAnalysis;

namespace Engine.Tests.KernelCompiler;

/// <summary>
/// One test per KRN diagnostic: the kernel compiler rejects what the kernel language does not
/// allow, with the right id, at the line of the offending syntax (marked <c>/*!*/</c>).
/// </summary>
public class KrnDiagnosticTests
{
    private static void AssertKrn(string id, string body, string extraTypes = "")
    {
        var result = GeneratorHarness.RunClass(body, extraTypes);
        var lines = result.Source.Split('\n');
        int expected = Array.FindIndex(lines, l => l.Contains("/*!*/")) + 1;
        Assert.True(expected > 0, "test source has no /*!*/ marker");
        var matches = result.Diagnostics.Where(d => d.Id == id).ToList();
        Assert.True(matches.Count > 0, $"expected {id}; got: {string.Join("; ", result.Diagnostics.Select(d => d.ToString()))}");
        Assert.Contains(matches, d => GeneratorHarness.Line(d) == expected);
        Assert.All(matches, d => Assert.False(string.IsNullOrWhiteSpace(d.GetMessage())));
        Assert.Empty(result.Diagnostics.Where(d => d.Id.StartsWith("CS") && d.Severity == DiagnosticSeverity.Error));
    }

    [Fact]
    public void KRN001_Allocation() => AssertKrn("KRN001", """
        [Kernel] static void K1(ArrayView<float> y)
        {
            float[] tmp = /*!*/ new float[4];
            y[0] = tmp.Length;
        }
        """);

    [Fact]
    public void KRN001_CollectionExpression() => AssertKrn("KRN001", """
        [Kernel] static void K1(ArrayView<int> y)
        {
            System.Span<int> tmp = /*!*/ [1, 2];
            y[0] = tmp[0];
        }
        """);

    [Fact]
    public void KRN002_Strings() => AssertKrn("KRN002", """
        [Kernel] static void K1(ArrayView<int> y)
        {
            int n = /*!*/ $"{y.Length}".Length;
            y[0] = n;
        }
        """);

    [Fact]
    public void KRN003_InstanceAndUnmarkedCalls() => AssertKrn("KRN003", """
        static float Helper(float x) => x * 2f;
        [Kernel] static void K1(ArrayView<float> y)
        {
            y[0] = /*!*/ Helper(y[1]);
        }
        """);

    [Fact]
    public void KRN003_InterfaceCall() => AssertKrn("KRN003", """
        [Kernel] static void K1(ArrayView<int> y, int a)
        {
            y[0] = /*!*/ a.CompareTo(3);
        }
        """);

    [Fact]
    public void KRN004_Exceptions() => AssertKrn("KRN004", """
        [Kernel] static void K1(ArrayView<float> y)
        {
            if (y.Length == 0)
                /*!*/ throw new System.ArgumentException();
            y[0] = 1f;
        }
        """);

    [Fact]
    public void KRN005_LocalFunction() => AssertKrn("KRN005", """
        [Kernel] static void K1(ArrayView<float> y)
        {
            float scale = 2f;
            /*!*/ float Twice(float v) => v * scale;
            y[0] = 1f;
        }
        """);

    [Fact]
    public void KRN006_Linq() => AssertKrn("KRN006", """
        [Kernel] static void K1(ArrayView<int> y, int n)
        {
            y[0] = /*!*/ System.Linq.Enumerable.Count(System.Linq.Enumerable.Range(0, n));
        }
        """);

    [Fact]
    public void KRN007_RecursionThroughKernelFunctions() => AssertKrn("KRN007", """
        [KernelFunction] static int Even(int n) => n == 0 ? 1 : Odd(n - 1);
        [KernelFunction] static int Odd(int n) => n == 0 ? 0 : /*!*/ Even(n - 1);
        [Kernel] static void K1(ArrayView<int> y) { y[0] = Even(y[1]); }
        """);

    [Fact]
    public void KRN007_GenericSelfCallWithOtherTypeArguments() => AssertKrn("KRN007", """
        [KernelFunction] static float Grow<T>(float v) where T : struct => v > 1f ? /*!*/ Grow<Wrap<T>>(v / 2f) : v;
        [Kernel] static void K1(ArrayView<float> y) { y[0] = Grow<int>(y[0]); }
        """, "public struct Wrap<T> { }");

    [Fact]
    public void KRN008_UnsupportedType() => AssertKrn("KRN008", """
        [Kernel] static void K1(ArrayView<float> y)
        {
            /*!*/ decimal d = 1m;
            y[0] = (float)d;
        }
        """);

    [Theory]
    [InlineData("object")]
    [InlineData("int[]")]
    [InlineData("char")]
    [InlineData("System.Collections.Generic.List<int>")]
    [InlineData("ArrayView<decimal>")]
    public void KRN008_UnsupportedParameterTypes(string type) => AssertKrn("KRN008", $$"""
        [Kernel] static void K1(ArrayView<float> y,
            /*!*/ {{type}} bad)
        {
            y[0] = 1f;
        }
        """);

    [Fact]
    public void KRN009_NonStaticKernel() => AssertKrn("KRN009", """
        }
        public partial class Instance
        {
            /*!*/ [Kernel] void K1(ArrayView<float> y) { y[0] = 1f; }
        """);

    [Fact]
    public void KRN010_RefParameter() => AssertKrn("KRN010", """
        [KernelFunction] static void Bump(/*!*/ ref float v) { v += 1f; }
        [Kernel] static void K1(ArrayView<float> y) { float v = 0f; Bump(ref v); y[0] = v; }
        """);

    [Fact]
    public void KRN011_Goto() => AssertKrn("KRN011", """
        [Kernel] static void K1(ArrayView<float> y)
        {
            int i = 0;
        again:
            i++;
            if (i < 3) /*!*/ goto again;
            y[0] = i;
        }
        """);

    [Fact]
    public void KRN012_UnsupportedStatement() => AssertKrn("KRN012", """
        [Kernel] static void K1(ArrayView<float> y)
        {
            /*!*/ foreach (var v in y.ToString()) y[0] = v;
        }
        """);

    [Fact]
    public void KRN013_SharedMemoryLengthNotConstant() => AssertKrn("KRN013", """
        [Kernel] static void K1(ArrayView<float> y, int n)
        {
            var shared = /*!*/ SharedMemory.Allocate<float>(n);
            shared[0] = 1f;
            y[0] = shared[0];
        }
        """);

    [Fact]
    public void KRN014_StaticState() => AssertKrn("KRN014", """
        static float s_scale = 2f;
        [Kernel] static void K1(ArrayView<float> y)
        {
            y[0] = /*!*/ s_scale;
        }
        """);

    [Fact]
    public void KRN015_KernelReturnsValue() => AssertKrn("KRN015", """
        [Kernel] static /*!*/ float K1(ArrayView<float> y) => y[0];
        """);

    [Fact]
    public void KRN016_GenericKernelWithoutInstance() => AssertKrn("KRN016", """
        [Kernel] static void /*!*/ K1<TOp>(ArrayView<float> y) where TOp : struct, IOp { y[0] = TOp.Apply(y[0]); }
        """, "public interface IOp { static abstract float Apply(float x); }");

    [Fact]
    public void KRN017_ShuffleInKernelFunction() => AssertKrn("KRN017", """
        [KernelFunction] static float WarpSum(float v)
        {
            for (int m = 16; m > 0; m /= 2) v += /*!*/ Warp.ShuffleXor(v, m);
            return v;
        }
        [Kernel] static void K1(ArrayView<float> y) { y[0] = WarpSum(y[0]); }
        """);
}
