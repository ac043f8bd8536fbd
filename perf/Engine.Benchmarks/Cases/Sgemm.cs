using Engine.Tensors;

namespace Engine.Benchmarks.Cases;

/// <summary>
/// <c>sgemm</c>: C = A·B for float32 A, B of 2048×2048 (torch_bench.py's <c>sgemm</c>, <c>a @ b</c>), 2·M·N·K
/// flops. Validated on sampled entries of C against a float64 dot product; GFLOP/s is also reported as a
/// share of the machine's measured FMA peak at the same thread count (<see cref="MachinePeak"/>).
/// </summary>
public sealed class Sgemm : BenchCase
{
    /// <inheritdoc />
    public override string Name => "sgemm";

    /// <inheritdoc />
    public override string Description => "float32 matmul 2048x2048 @ 2048x2048";

    /// <inheritdoc />
    public override string Target => "issue 6: >= 1.0x PyTorch's GFLOP/s (stretch: >= 70% of the measured FMA peak)";

    /// <inheritdoc />
    public override bool RunsOnDevices => true;

    /// <inheritdoc />
    public override BenchRun Prepare(BenchOptions options)
    {
        long m = options.Tiny ? 33 : options.Quick ? 200 : 2048;
        var device = options.Target;
        var a = device.Place(Tensor.Randn([m, m], generator: new Generator(1)));
        var b = device.Place(Tensor.Randn([m, m], generator: new Generator(2)));
        var run = new BenchRun([m, m, m], () => a.MatMul(b).Dispose()) { Flops = 2.0 * m * m * m };
        run.Own(a);
        run.Own(b);
        using (var c = a.MatMul(b)) run.Extra["max_rel_err"] = Validate(a, b, c);
        if (device.IsCpu)
        {
            double peak = MachinePeak.FmaGflops(options.Threads, options.Quick);
            run.Extra["fma_peak_gflops"] = Math.Round(peak, 1);
        }
        return run;
    }

    /// <summary>
    /// Checks 256 sampled entries of C (copied to the host, whatever the device) against float64 dot products;
    /// the error of each is measured relative to Σ|a||b| (the scale of the float32 rounding error of a K-term
    /// sum), which must stay below 1e-5.
    /// </summary>
    private static double Validate(Tensor a, Tensor b, Tensor c)
    {
        long m = a.Size(0), k = a.Size(1), n = b.Size(1);
        float[] pa = a.ToArray<float>(), pb = b.ToArray<float>(), pc = c.ToArray<float>();
        var rng = new Random(3);
        double worst = 0;
        for (int s = 0; s < 256; s++)
        {
            long i = s < 2 ? s * (m - 1) : rng.NextInt64(m), j = s < 2 ? s * (n - 1) : rng.NextInt64(n);
            double sum = 0, abs = 0;
            for (long p = 0; p < k; p++)
            {
                double t = (double)pa[i * k + p] * pb[p * n + j];
                sum += t;
                abs += Math.Abs(t);
            }
            worst = Math.Max(worst, Math.Abs(pc[i * n + j] - sum) / abs);
        }
        if (!(worst <= 1e-5)) throw new BenchValidationException($"sgemm: error {worst:g3} relative to sum|a||b| against the float64 product exceeds 1e-5");
        return worst;
    }
}
