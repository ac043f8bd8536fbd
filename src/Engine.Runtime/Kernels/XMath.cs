namespace Engine.Runtime.Kernels;

/// <summary>
/// Math functions kernels may call. In C# they are <see cref="MathF"/>/<see cref="Math"/>; the
/// kernel compiler maps each to the CUDA and OpenCL function of the same meaning (expf/exp, ...).
/// </summary>
public static class XMath
{
    /// <summary>e^x.</summary>
    public static float Exp(float x) => MathF.Exp(x);
    /// <summary>e^x.</summary>
    public static double Exp(double x) => Math.Exp(x);
    /// <summary>2^x.</summary>
    public static float Exp2(float x) => MathF.Pow(2f, x);
    /// <summary>Natural logarithm.</summary>
    public static float Log(float x) => MathF.Log(x);
    /// <summary>Natural logarithm.</summary>
    public static double Log(double x) => Math.Log(x);
    /// <summary>Base-2 logarithm.</summary>
    public static float Log2(float x) => MathF.Log2(x);
    /// <summary>Square root.</summary>
    public static float Sqrt(float x) => MathF.Sqrt(x);
    /// <summary>Square root.</summary>
    public static double Sqrt(double x) => Math.Sqrt(x);
    /// <summary>1 / sqrt(x).</summary>
    public static float Rsqrt(float x) => 1f / MathF.Sqrt(x);
    /// <summary>Hyperbolic tangent.</summary>
    public static float Tanh(float x) => MathF.Tanh(x);
    /// <summary>a·b + c with one rounding.</summary>
    public static float Fma(float a, float b, float c) => MathF.FusedMultiplyAdd(a, b, c);
    /// <summary>The larger value (the other one if one is NaN, as fmaxf).</summary>
    public static float Max(float a, float b) => float.IsNaN(a) ? b : float.IsNaN(b) ? a : MathF.Max(a, b);
    /// <summary>The larger value.</summary>
    public static int Max(int a, int b) => Math.Max(a, b);
    /// <summary>The smaller value (the other one if one is NaN, as fminf).</summary>
    public static float Min(float a, float b) => float.IsNaN(a) ? b : float.IsNaN(b) ? a : MathF.Min(a, b);
    /// <summary>The smaller value.</summary>
    public static int Min(int a, int b) => Math.Min(a, b);
    /// <summary>Absolute value.</summary>
    public static float Abs(float x) => MathF.Abs(x);
    /// <summary>Absolute value.</summary>
    public static int Abs(int x) => Math.Abs(x);
    /// <summary>Largest integer not above x.</summary>
    public static float Floor(float x) => MathF.Floor(x);
    /// <summary>The error function erf(x) = 2/√π ∫₀ˣ e^(−t²) dt (CUDA erff, OpenCL erf; here
    /// <see cref="SpecialFunctions.Erf"/> in double, rounded once). erf(±∞) = ±1, erf(NaN) = NaN.</summary>
    public static float Erf(float x) => (float)SpecialFunctions.Erf(x);
    /// <summary>The error function (CUDA and OpenCL erf; here <see cref="SpecialFunctions.Erf"/>).</summary>
    public static double Erf(double x) => SpecialFunctions.Erf(x);
    /// <summary>The complementary error function 1 − erf(x), accurate in the x → +∞ tail (CUDA erfcf,
    /// OpenCL erfc; here <see cref="SpecialFunctions.Erfc"/> in double, rounded once). erfc(−∞) = 2, erfc(+∞) = 0.</summary>
    public static float Erfc(float x) => (float)SpecialFunctions.Erfc(x);
    /// <summary>The complementary error function (CUDA and OpenCL erfc; here <see cref="SpecialFunctions.Erfc"/>).</summary>
    public static double Erfc(double x) => SpecialFunctions.Erfc(x);
    /// <summary>True for NaN.</summary>
    public static bool IsNaN(float x) => float.IsNaN(x);
    /// <summary>True for ±∞.</summary>
    public static bool IsInfinity(float x) => float.IsInfinity(x);
}
