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
    public override BenchRun Prepare(BenchOptions options)
    {
        long n = options.Quick ? 64 : 4096, v = options.Quick ? 1000 : 32000;
        const double temperature = 4.0;
        var x = Tensor.Randn([n, v], generator: new Generator(0));
        var run = new BenchRun([n, v], () => x.Softmax(1, temperature).Dispose()) { Bytes = 8.0 * n * v };
        run.Own(x);
        Validate(x, temperature);
        run.Extra["temperature"] = temperature;
        return run;
    }

    /// <summary>Checks rows spread over the tensor against a float64 softmax.</summary>
    private static unsafe void Validate(Tensor x, double temperature)
    {
        using var y = x.Softmax(1, temperature);
        long n = x.Size(0), v = x.Size(1);
        float* px = x.Ptr<float>(), py = y.Ptr<float>();
        double worst = 0;
        foreach (long row in new[] { 0, n / 2, n - 1 })
        {
            double max = double.NegativeInfinity, sum = 0;
            for (long j = 0; j < v; j++) max = Math.Max(max, px[row * v + j] / temperature);
            for (long j = 0; j < v; j++) sum += Math.Exp(px[row * v + j] / temperature - max);
            for (long j = 0; j < v; j++)
            {
                double want = Math.Exp(px[row * v + j] / temperature - max) / sum;
                worst = Math.Max(worst, Math.Abs(py[row * v + j] - want) / Math.Max(want, 1e-30));
            }
        }
        if (worst > 1e-4) throw new BenchValidationException($"softmax-t: relative error {worst:g3} against the float64 softmax exceeds 1e-4");
    }
}
