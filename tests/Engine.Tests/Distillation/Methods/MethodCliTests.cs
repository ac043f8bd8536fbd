using Engine.Distillation.Methods;
using System.Text.Json;
using System.Xml.Linq;
using Engine.Tensors.Serialization;
using Engine.Tests.Cli;

namespace Engine.Tests.Distillation.Methods;

/// <summary><c>engine distill --method NAME</c> and <c>engine experiment NAME</c> on the tiny synthetic data set.</summary>
public class MethodCliTests(CliFixture fx) : IClassFixture<CliFixture>
{
    private static Dictionary<string, string> Metadata(string checkpoint)
    {
        var tensors = SafeTensors.Load(checkpoint, out var meta);
        foreach (var t in tensors.Values) t.Dispose();
        return meta;
    }

    [Theory]
    [InlineData("fitnets", true, "feature_weight", "100")]
    [InlineData("at", true, "feature_weight", "1000")]
    [InlineData("rkd", true, null, null)]
    [InlineData("dml", false, "peers", "2")]
    [InlineData("pskd", false, "alpha", "0.8")]
    public void DistillRunsTheMethodAndSavesIt(string method, bool teacher, string? key, string? value)
    {
        string ckpt = fx.NewPath(method + ".safetensors"), metrics = fx.NewPath(method + ".jsonl");
        var args = new List<string> { "distill", "--method", method, "--epochs", "1", "--batch-size", "16", "--limit", "48", "--test-limit", "20", "--out", ckpt, "--metrics", metrics };
        if (teacher) args.AddRange(["--teacher", fx.TeacherPath]);
        var (rc, output, err) = fx.Run([.. args]);
        Assert.True(rc == 0, err);
        Assert.Contains($"{method} student epoch 1/1", output);
        Assert.Contains($"{method} student: test accuracy", output);
        var meta = Metadata(ckpt);
        Assert.Equal(method, meta["method"]);
        if (key is not null) Assert.Equal(value, meta[key]);
        var record = JsonDocument.Parse(File.ReadAllLines(metrics).Single()).RootElement;
        Assert.Equal(method, record.GetProperty("method").GetString());
        // the saved student evaluates to the stored accuracy
        var (rc2, evalOut, err2) = fx.Run("eval", ckpt, "--test-limit", "20");
        Assert.True(rc2 == 0, err2);
        Assert.Contains("stored at training", evalOut);
    }

    [Fact]
    public void DistillBanTrainsGenerationsAndExplainsMistakes()
    {
        string ckpt = fx.NewPath("ban.safetensors");
        var (rc, output, err) = fx.Run("distill", "--method", "ban", "--generations", "2", "--epochs", "1", "--batch-size", "16", "--limit", "32", "--test-limit", "20", "--out", ckpt);
        Assert.True(rc == 0, err);
        Assert.Contains("ban generation 0: test accuracy", output);
        Assert.Contains("ban generation 2: test accuracy", output);
        Assert.Equal("2", Metadata(ckpt)["generation"]);

        (rc, _, err) = fx.Run("distill", "--method", "ban", "--teacher", fx.TeacherPath, "--epochs", "1");
        Assert.Equal(1, rc);
        Assert.Contains("--method ban needs generation 0 of the student's architecture", err);
        (rc, _, err) = fx.Run("distill", "--method", "fitnets", "--epochs", "1");
        Assert.Equal(1, rc);
        Assert.Contains("--method fitnets needs --teacher CKPT", err);
        (rc, _, err) = fx.Run("distill", "--method", "dml", "--teacher", fx.TeacherPath, "--epochs", "1");
        Assert.Equal(1, rc);
        Assert.Contains("--method dml learns without a teacher", err);
        (rc, _, err) = fx.Run("distill", "--method", "nope", "--teacher", fx.TeacherPath);
        Assert.Equal(1, rc);
        Assert.Contains("available: kd, fitnets, at, rkd, dml, pskd, ban, defensive, scratch", err);
    }

    [Fact]
    public void ExperimentWritesTableAndChartsForTheQuickVersion()
    {
        string dir = fx.NewPath("exp");
        var (rc, output, err) = fx.Run("experiment", "fmnist-methods", "--data", fx.DataDir, "--epochs", "1", "--teacher-epochs", "1", "--seeds", "2",
            "--limit", "32", "--test-limit", "20", "--batch-size", "16", "--out-dir", dir, "--methods", "scratch,kd,at,dml");
        Assert.True(rc == 0, err);
        Assert.Contains("teacher epoch 1/1", output);
        Assert.Contains("[8/8] dml seed 1: test accuracy", output);
        Assert.Contains("[8/8] dml seed 1 epoch 1/1:", output);
        Assert.DoesNotContain("epoch 2/", output);
        Assert.Contains("| method | test accuracy (%) | vs scratch (points) | train s/epoch | s/run |", output);
        string md = File.ReadAllText(Path.Combine(dir, "results.md"));
        foreach (var m in new[] { "| scratch |", "| kd |", "| at |", "| dml |", "| teacher (1.7M parameters) |" }) Assert.Contains(m, md);
        Assert.Contains("Command: `engine experiment fmnist-methods", md);
        XNamespace svg = "http://www.w3.org/2000/svg";
        Assert.Equal(4, XDocument.Load(Path.Combine(dir, "curves.svg")).Descendants(svg + "polyline").Count());
        XDocument.Load(Path.Combine(dir, "accuracy.svg"));
        Assert.Equal(8, File.ReadAllLines(Path.Combine(dir, "runs.jsonl")).Length);
        Assert.True(File.Exists(Path.Combine(dir, "teacher.safetensors")));

        // A given teacher is reused; an unknown experiment or method is an error naming the choices.
        (rc, output, err) = fx.Run("experiment", "fmnist-methods", "--data", fx.DataDir, "--epochs", "1", "--seeds", "1", "--limit", "16", "--test-limit", "10",
            "--batch-size", "16", "--out-dir", fx.NewPath("exp2"), "--methods", "kd", "--teacher", fx.TeacherPath);
        Assert.True(rc == 0, err);
        Assert.DoesNotContain("teacher epoch", output);
        (rc, _, err) = fx.Run("experiment", "nope");
        Assert.Equal(1, rc);
        Assert.Contains("unknown experiment 'nope'; available: fmnist-methods, defensive", err);
        (rc, _, err) = fx.Run("experiment", "fmnist-methods", "--data", fx.DataDir, "--methods", "kd,xyz", "--teacher", fx.TeacherPath);
        Assert.Equal(1, rc);
        Assert.Contains("unknown method 'xyz'", err);

        // Methods with options label their rows; --extra-teachers adds multi-teacher (two copies of one file are two
        // teachers here: the experiment does not judge the ensemble), and its errors name the option.
        string dir3 = fx.NewPath("exp3");
        (rc, output, err) = fx.Run("experiment", "fmnist-methods", "--data", fx.DataDir, "--epochs", "1", "--seeds", "1", "--limit", "16", "--test-limit", "10",
            "--batch-size", "16", "--out-dir", dir3, "--teacher", fx.TeacherPath, "--extra-teachers", fx.TeacherPath, "--methods", "dkd:beta=1,multi-teacher");
        Assert.True(rc == 0, err);
        string md3 = File.ReadAllText(Path.Combine(dir3, "results.md"));
        Assert.Contains("| dkd:beta=1 |", md3);
        Assert.Contains("| multi-teacher |", md3);
        (rc, _, err) = fx.Run("experiment", "fmnist-methods", "--data", fx.DataDir, "--extra-teachers", fx.TeacherPath, "--methods", "multi-teacher");
        Assert.Equal(1, rc);
        Assert.Contains("--extra-teachers: give the first teacher with --teacher", err);
        (rc, _, err) = fx.Run("experiment", "fmnist-methods", "--data", fx.DataDir, "--teacher", fx.TeacherPath, "--extra-teachers", "missing.safetensors");
        Assert.Equal(1, rc);
        Assert.Contains("--extra-teachers: checkpoint not found: missing.safetensors", err);
        (rc, _, err) = fx.Run("experiment", "fmnist-methods", "--data", fx.DataDir, "--teacher", fx.TeacherPath, "--methods", "dkd:beta=x");
        Assert.Equal(1, rc);
        Assert.Contains("method 'dkd:beta=x': option beta = 'x' is not a finite number", err);
    }

    [Fact]
    public void DefensiveExperimentQuickVersion()
    {
        string dir = fx.NewPath("def");
        var (rc, output, err) = fx.Run("experiment", "defensive", "--data", fx.DataDir, "--epochs", "1", "--seeds", "1", "--limit", "32", "--test-limit", "20",
            "--batch-size", "16", "--out-dir", dir);
        Assert.True(rc == 0, err);
        Assert.Contains("seed 0: normal clean", output);
        Assert.Contains("| defensively distilled, T = 20 |", File.ReadAllText(Path.Combine(dir, "results.md")));
        XDocument.Load(Path.Combine(dir, "robustness.svg"));
    }
}

/// <summary>The method trainer reproduces the CLI's original KD trainer (same seeds, same loss, same schedule).</summary>
public class MethodTrainerMatchesCliTrainerTests
{
    [Fact]
    public void KdThroughTheRegistryEqualsTrainerTrain()
    {
        var train = TrainerAndRobustnessTests.Tiny(48, 21);
        var test = TrainerAndRobustnessTests.Tiny(20, 22);
        using var teacher = Engine.Tensors.NN.Models.FashionMnistModels.Teacher(new Engine.Tensors.Generator(23));
        var console = new Engine.Cli.Training.CliConsole(TextWriter.Null, TextWriter.Null, false);
        var s = new Engine.Cli.Training.TrainSettings { Epochs = 2, BatchSize = 16, Seed = 5, Augment = false };
        var old = Engine.Cli.Training.Trainer.Train(Engine.Cli.Training.ModelKind.Student, s, train, test, console, teacher, new Engine.Cli.Training.DistillSettings(4, 0.9));
        using (old.Model)
        {
            using var student = Engine.Cli.Training.Trainer.Build(Engine.Cli.Training.ModelKind.Student, 5);
            using var method = MethodRegistry.Create("kd", MethodTests.Context(student, teacher));
            var r = MethodTrainer.Train(method, new MethodTrainSettings { Epochs = 2, BatchSize = 16, Seed = 5 }, train, test);
            for (int e = 0; e < 2; e++)
            {
                Assert.Equal(old.Epochs[e].TrainLoss, r.Epochs[e].TrainLoss, 1e-6);
                Assert.Equal(old.Epochs[e].TestAccuracy, r.Epochs[e].TestAccuracy);
            }
        }
    }
}
