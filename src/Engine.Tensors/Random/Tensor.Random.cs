namespace Engine.Tensors;

/// <summary>
/// Random tensors drawn from a <see cref="Generator"/> (default: <see cref="Generator.Default"/>).
/// Element i (row-major) of a draw depends only on the generator's (seed, offset) and i, so results
/// do not depend on the thread count; each draw advances the generator's offset. Formulas and bit
/// usage are documented on <c>Samplers</c> (src/Engine.Tensors/Random/Samplers.cs).
/// </summary>
public sealed partial class Tensor
{
    /// <summary>Re-seeds <see cref="Generator.Default"/> (seed <paramref name="seed"/>, offset 0), like torch.manual_seed.</summary>
    public static void ManualSeed(ulong seed) => Generator.ManualSeed(seed);

    /// <summary>
    /// Uniform samples on [0, 1): float32 values are multiples of 2^-24 (24 random bits), float64
    /// values multiples of 2^-53 (53 random bits).
    /// </summary>
    public static Tensor Rand(long[] shape, DType dtype = DType.Float32, Generator? generator = null)
    {
        RequireFloat("Rand", dtype);
        var t = Allocate(shape, dtype, zero: false, "Rand");
        t.FillUniform(0, 1, generator);
        return t;
    }

    /// <summary>Standard normal samples (Box–Muller from pairs of uniforms, computed in float64).</summary>
    public static Tensor Randn(long[] shape, DType dtype = DType.Float32, Generator? generator = null)
    {
        RequireFloat("Randn", dtype);
        var t = Allocate(shape, dtype, zero: false, "Randn");
        t.FillNormal(0, 1, generator);
        return t;
    }

    /// <summary>
    /// Int64 samples uniform on [<paramref name="low"/>, <paramref name="high"/>), exactly unbiased
    /// (64-bit multiply-shift with rejection).
    /// </summary>
    public static Tensor RandInt(long low, long high, long[] shape, Generator? generator = null)
    {
        if (high <= low)
            throw new ArgumentException($"RandInt: the range [{low}, {high}) is empty; expected low < high.");
        var t = Allocate(shape, DType.Int64, zero: false, "RandInt");
        CheckElementLimit("RandInt", t.NumEl);
        unsafe
        {
            Samplers.Run(generator, t.Ptr<long>(), t.NumEl, new Samplers.Integer(low, unchecked((ulong)(high - low))));
        }
        return t;
    }

    /// <summary>
    /// 1 with probability <c>probs[i]</c>, else 0, in the dtype and shape of <paramref name="probs"/>
    /// (a float tensor of values in [0, 1]), like torch.bernoulli. Not differentiable.
    /// </summary>
    public static Tensor Bernoulli(Tensor probs, Generator? generator = null)
    {
        ArgumentNullException.ThrowIfNull(probs);
        RequireFloat("Bernoulli", probs.DType);
        using var p = probs.Contiguous();
        for (long i = 0; i < p.NumEl; i++)
        {
            double v = p.GetFlat(i);
            if (!(v >= 0 && v <= 1))
                throw new ArgumentOutOfRangeException(nameof(probs), $"Bernoulli: probability {v} at element {i} of a tensor of shape {ShapeUtil.Format(probs.Shape)} is outside [0, 1].");
        }
        var t = Allocate(probs.ShapeArray(), probs.DType, zero: false, "Bernoulli");
        unsafe
        {
            if (t.DType == DType.Float32)
                Samplers.Run(generator, t.Ptr<float>(), t.NumEl, new Samplers.BernoulliTensor<float>((nint)p.Ptr<float>()));
            else
                Samplers.Run(generator, t.Ptr<double>(), t.NumEl, new Samplers.BernoulliTensor<double>((nint)p.Ptr<double>()));
        }
        return t;
    }

    /// <summary>1 with probability <paramref name="p"/> (in [0, 1]), else 0, as a float tensor of <paramref name="shape"/>.</summary>
    public static Tensor Bernoulli(long[] shape, double p, DType dtype = DType.Float32, Generator? generator = null)
    {
        RequireFloat("Bernoulli", dtype);
        if (!(p >= 0 && p <= 1))
            throw new ArgumentOutOfRangeException(nameof(p), $"Bernoulli: probability {p} is outside [0, 1].");
        var t = Allocate(shape, dtype, zero: false, "Bernoulli");
        unsafe
        {
            if (dtype == DType.Float32) Samplers.Run(generator, t.Ptr<float>(), t.NumEl, new Samplers.BernoulliScalar<float>(p));
            else Samplers.Run(generator, t.Ptr<double>(), t.NumEl, new Samplers.BernoulliScalar<double>(p));
        }
        return t;
    }

    /// <summary>
    /// A random permutation of 0..<paramref name="n"/>-1 (int64), by Fisher–Yates: for i = n−1 down
    /// to 1, swap element i with element j uniform on [0, i] (j drawn as <see cref="RandInt"/> draws,
    /// step k = n−1−i taking sample k, so the result depends only on the generator state).
    /// </summary>
    public static Tensor RandPerm(long n, Generator? generator = null)
    {
        if (n < 0) throw new ArgumentOutOfRangeException(nameof(n), $"RandPerm: n must be non-negative, got {n}.");
        CheckElementLimit("RandPerm", n);
        var t = Allocate([n], DType.Int64, zero: false, "RandPerm");
        unsafe
        {
            long* a = t.Ptr<long>();
            for (long i = 0; i < n; i++) a[i] = i;
            long steps = Math.Max(0, n - 1);
            if (steps == 0) return t;
            var (seed, offset) = (generator ?? Generator.Default).Reserve((ulong)((steps + 1) / 2));
            for (long k = 0; k < steps; k++)
            {
                long i = n - 1 - k;
                var block = Philox.Compute(seed, offset, (ulong)k / 2);
                var sampler = new Samplers.Integer(0, (ulong)(i + 1));
                long j = sampler.Map(k % 2 == 0 ? block.Low64 : block.High64, seed, offset, (ulong)k);
                (a[i], a[j]) = (a[j], a[i]);
            }
        }
        return t;
    }

    /// <summary>
    /// Fills this float tensor in place with samples uniform on [<paramref name="lo"/>, <paramref name="hi"/>)
    /// (lo + (hi − lo)·u, kept below hi when rounding to the dtype would reach it). Returns this tensor.
    /// </summary>
    public Tensor Uniform_(double lo = 0, double hi = 1, Generator? generator = null)
    {
        CheckInPlace("Uniform_");
        RequireFloat("Uniform_", DType);
        if (!(lo <= hi) || !double.IsFinite(lo) || !double.IsFinite(hi))
            throw new ArgumentException($"Uniform_: expected finite lo <= hi, got [{lo}, {hi}).");
        FillUniform(lo, hi, generator);
        return this;
    }

    /// <summary>Fills this float tensor in place with normal samples of <paramref name="mean"/> and <paramref name="std"/> (≥ 0). Returns this tensor.</summary>
    public Tensor Normal_(double mean = 0, double std = 1, Generator? generator = null)
    {
        CheckInPlace("Normal_");
        RequireFloat("Normal_", DType);
        if (!(std >= 0) || !double.IsFinite(std) || !double.IsFinite(mean))
            throw new ArgumentException($"Normal_: expected finite mean and std >= 0, got mean {mean}, std {std}.");
        FillNormal(mean, std, generator);
        return this;
    }

    private void FillUniform(double lo, double hi, Generator? generator)
    {
        FillRowMajor(generator, (t, g) =>
        {
            unsafe
            {
                if (t.DType == DType.Float32) Samplers.Run(g, t.Ptr<float>(), t.NumEl, new Samplers.UniformFloat(lo, hi));
                else Samplers.Run(g, t.Ptr<double>(), t.NumEl, new Samplers.UniformDouble(lo, hi));
            }
        });
    }

    private void FillNormal(double mean, double std, Generator? generator)
    {
        FillRowMajor(generator, (t, g) =>
        {
            unsafe
            {
                if (t.DType == DType.Float32) Samplers.Run(g, t.Ptr<float>(), t.NumEl, new Samplers.NormalFloat(mean, std));
                else Samplers.Run(g, t.Ptr<double>(), t.NumEl, new Samplers.NormalDouble(mean, std));
            }
        });
    }

    /// <summary>Runs <paramref name="fill"/> on this tensor if contiguous, else on a contiguous temporary copied in row-major order.</summary>
    private void FillRowMajor(Generator? generator, Action<Tensor, Generator?> fill)
    {
        if (IsContiguous) { fill(this, generator); return; }
        using var tmp = Allocate(ShapeArray(), DType, zero: false, "fill");
        fill(tmp, generator);
        Cpu.Copy.Into(tmp, this);
    }

    private static void RequireFloat(string op, DType dtype)
    {
        if (!dtype.IsFloatingPoint())
            throw new ArgumentException($"{op}: dtype {dtype.Name()} is not supported; expected float32 or float64.");
    }

    private static void CheckElementLimit(string op, long n)
    {
        if (n >= Samplers.Integer.MaxElements)
            throw new ArgumentOutOfRangeException(nameof(n), $"{op}: {n} elements is more than the {Samplers.Integer.MaxElements} one draw supports.");
    }
}
