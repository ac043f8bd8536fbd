using System.CommandLine;
using System.Text.Json;
using Engine.Distillation.LanguageModel;
using Engine.Tensors;

namespace Engine.Tests.Distillation.LanguageModel;

/// <summary>
/// Short runs of the testbed: the teacher learns the oracle, every method's student gets closer to the oracle,
/// the report and JSON lines carry every run, the top-k helper is exact, and the CLI command writes its files.
/// </summary>
public class LmTestbedTests
{
    private static LmTestbedSettings TinySettings() => new()
    {
        Oracle = new(VocabSize: 16, ContextLength: 6, Width: 16, Layers: 1, Heads: 2, InitStd: 0.25),
        Teacher = new(VocabSize: 16, ContextLength: 6, Width: 16, Layers: 1, Heads: 2),
        Student = new(VocabSize: 16, ContextLength: 6, Width: 8, Layers: 1, Heads: 2),
        TeacherSteps = 60,
        TeacherSequences = 256,
        Steps = 24,
        BatchSize = 16,
        OfflineSequences = 32,
        EvalSequences = 32,
        EvalPoints = 2,
        Seeds = 1,
        LearningRate = 1e-2,
        TeacherLearningRate = 1e-2,
        Loss = new LmLossSettings(TopK: 4),
    };

    [Fact]
    public void EveryDistilledStudentGetsCloserToTheOracleAndTheReportListsEveryRun()
    {
        var settings = TinySettings() with { Regimes = [LmRegime.Online] };
        var lines = new List<string>();
        var result = LmTestbed.Run(settings, lines.Add);
        Assert.Contains(lines, l => l.StartsWith("oracle", StringComparison.Ordinal));
        Assert.True(result.TeacherKl < 0.7 * result.UniformKl, $"teacher KL {result.TeacherKl} vs uniform {result.UniformKl}");
        Assert.Equal(Enum.GetValues<LmMethod>().Length, result.Runs.Count);
        foreach (var run in result.Runs)
        {
            Assert.Equal([0L, 12, 24], run.Curve.Select(p => p.Step));
            Assert.True(run.Curve[^1].KlToOracle < run.Curve[0].KlToOracle,
                $"{run.Method}: KL(oracle‖student) {run.Curve[0].KlToOracle} → {run.Curve[^1].KlToOracle}");
            Assert.True(double.IsFinite(run.FinalLoss) && run.Seconds > 0);
        }
        var md = result.ToMarkdown("engine lm-testbed --test");
        foreach (var m in Enum.GetValues<LmMethod>()) Assert.Contains($"| {LmDistillationLoss.Name(m)} |", md);
        Assert.Contains("online: KL(oracle ‖ student)", md);
        var json = result.ToJsonLines().Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l).RootElement).ToArray();
        Assert.Equal("setup", json[0].GetProperty("kind").GetString());
        Assert.Equal(result.TeacherKl, json[0].GetProperty("teacher_kl").GetDouble());
        Assert.Equal(result.Runs.Count, json.Count(j => j.GetProperty("kind").GetString() == "run"));
        Assert.Equal(3, json[1].GetProperty("curve").GetArrayLength());
    }

    [Fact]
    public void OfflineRegimeTrainsFromTheFixedSetAndAggregatesOverSeeds()
    {
        var settings = TinySettings() with { Regimes = [LmRegime.Offline], Methods = [LmMethod.ForwardKl], Seeds = 2, TeacherSteps = 20 };
        var result = LmTestbed.Run(settings);
        Assert.Equal(2, result.Runs.Count);
        Assert.NotEqual(result.Runs[0].KlToOracle, result.Runs[1].KlToOracle); // seeds differ
        var (mean, std, count) = result.Aggregate(LmMethod.ForwardKl, LmRegime.Offline, r => r.KlToOracle);
        Assert.Equal(2, count);
        Assert.Equal((result.Runs[0].KlToOracle + result.Runs[1].KlToOracle) / 2, mean, 12);
        Assert.Equal(Math.Abs(result.Runs[0].KlToOracle - result.Runs[1].KlToOracle) / Math.Sqrt(2), std, 12);
        Assert.Contains(" ± ", result.ToMarkdown());
    }

    [Fact]
    public void TopKProbabilitiesAreTheLargestSoftmaxEntriesInOrder()
    {
        using var logits = Tensor.FromArray(new float[] { 0, 2, 1, -1, 3, 3, 0, 0 }, 2, 4);
        var (idx, val) = LmDistillationLoss.TopKProbabilities(logits, 2);
        using (idx)
        using (val)
        {
            Assert.Equal([2L, 2], idx.ShapeArray());
            Assert.Equal([1L, 2, 0, 1], idx.ToArray<long>()); // ties: lower index first
            double z0 = 1 + Math.Exp(2) + Math.Exp(1) + Math.Exp(-1), z1 = 2 * Math.Exp(3) + 2;
            TestUtil.AssertClose([Math.Exp(2) / z0, Math.Exp(1) / z0, Math.Exp(3) / z1, Math.Exp(3) / z1], val.ToArray<float>().Select(x => (double)x).ToArray(), atol: 1e-6);
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => LmDistillationLoss.TopKProbabilities(logits, 5));
        Assert.Equal(LmMethod.TopK, LmDistillationLoss.Parse("Top-K"));
        Assert.Throws<ArgumentException>(() => LmDistillationLoss.Parse("kd"));
    }

    [Fact]
    public void BadSettingsNameEveryProblem()
    {
        var e = Assert.Throws<ArgumentException>(() => (TinySettings() with { Steps = 1, Student = TinySettings().Student with { VocabSize = 8 } }).Validate());
        Assert.Contains("Steps = 1", e.Message);
        Assert.Contains("Student has V=8", e.Message);
    }

    [Fact]
    public void CommandWritesTheTableAndJsonLines()
    {
        string dir = Path.Combine(Path.GetTempPath(), "lm-testbed-test-" + Environment.ProcessId);
        try
        {
            var root = new RootCommand { Engine.Cli.LmTestbedCommand.Create() };
            var output = new StringWriter();
            var error = new StringWriter();
            var config = new InvocationConfiguration { Output = output, Error = error };
            int rc = root.Parse(["lm-testbed", "--steps", "2", "--teacher-steps", "2", "--teacher-sequences", "16", "--seeds", "1",
                "--methods", "forward-kl,taid", "--regimes", "online", "--eval-sequences", "4", "--offline-sequences", "4", "--batch", "4", "--out", dir]).Invoke(config);
            Assert.True(rc == 0, error.ToString());
            Assert.Contains("| taid |", File.ReadAllText(Path.Combine(dir, "lm-testbed.md")));
            Assert.Equal(3, File.ReadAllLines(Path.Combine(dir, "lm-testbed.jsonl")).Length);
            var svg = System.Xml.Linq.XDocument.Load(Path.Combine(dir, "lm-testbed.svg")); // well-formed XML
            Assert.Equal(2, svg.Descendants().Count(e => e.Name.LocalName == "polyline")); // one line per method
            rc = root.Parse(["lm-testbed", "--top-k-rest", "spread", "--out", dir]).Invoke(config);
            Assert.Equal(2, rc);
            Assert.Contains("KL(oracle‖student)", output.ToString());

            rc = root.Parse(["lm-testbed", "--methods", "kd", "--out", dir]).Invoke(config);
            Assert.Equal(2, rc);
            Assert.Contains("Unknown method 'kd'", error.ToString());
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }
}
