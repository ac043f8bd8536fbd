using Engine.Tensors;

namespace Engine.Benchmarks.Cases;

/// <summary>
/// <c>softmax-t</c>: forward only, softmax(x / T) over the rows of [4096, 32000], T = 4 (torch_bench.py's
/// <c>softmax_t</c>). Memory floor: read x once, write y once = 8 bytes per element.
/// </summary>
public sealed class SoftmaxT : BenchCase
{
    /// <inheritdoc />
    public override string Name => "softmax-t";

    /// <inheritdoc />
    public override string Description => "softmax(x / 4) over rows of [4096, 32000], forward";

    /// <inheritdoc />
    public override string Target => "issue 6: >= 5x faster than PyTorch";

    /// <inheritdoc />
    public override bool RunsOnDevices => true;

    /// <inheritdoc />
    public override BenchRun Prepare(BenchOptions options)
    {
        long n = options.Tiny ? 4 : options.Quick ? 64 : 4096, v = options.Tiny ? 67 : options.Quick ? 1000 : 32000;
        const double temperature = 4.0;
        var device = options.Target;
        var x = device.Place(Tensor.Randn([n, v], generator: new Generator(0)));
        var run = new BenchRun([n, v], () => x.Softmax(1, temperature).Dispose()) { Bytes = 8.0 * n * v };
        run.Own(x);
        run.Extra["max_rel_error"] = Validate(x, temperature);
        run.Extra["temperature"] = temperature;
        return run;
    }

    /// <summary>
    /// Checks rows spread over the tensor against a float64 softmax (on any device: the rows are copied to the
    /// host); relative error per element, limit 1e-4.
    /// </summary>
    private static double Validate(Tensor x, double temperature)
    {
        using var y = x.Softmax(1, temperature);
        long n = x.Size(0), v = x.Size(1);
        double worst = 0;
        foreach (long row in new[] { 0, n / 2, n - 1 })
        {
            float[] px, py;
            using (var xr = x.Select(0, row)) px = xr.ToArray<float>();
            using (var yr = y.Select(0, row)) py = yr.ToArray<float>();
            double max = double.NegativeInfinity, sum = 0;
            for (long j = 0; j < v; j++) max = Math.Max(max, px[j] / temperature);
            for (long j = 0; j < v; j++) sum += Math.Exp(px[j] / temperature - max);
            for (long j = 0; j < v; j++)
            {
                double want = Math.Exp(px[j] / temperature - max) / sum;
                worst = Math.Max(worst, Math.Abs(py[j] - want) / Math.Max(want, 1e-30));
            }
        }
        if (!(worst <= 1e-4)) throw new BenchValidationException($"softmax-t: relative error {worst:g3} against the float64 softmax exceeds 1e-4");
        return worst;
    }
}
