using System.Globalization;
using System.Text.Json;
using Engine.Cli.Training;
using Engine.Data;
using Engine.Tensors;
using Engine.Tensors.Serialization;

namespace Engine.Tests.Cli;

public class TrainCommandTests(CliFixture fx) : IClassFixture<CliFixture>
{
    private static Dictionary<string, string> Metadata(string checkpoint)
    {
        var tensors = SafeTensors.Load(checkpoint, out var meta);
        foreach (var t in tensors.Values) t.Dispose();
        return meta;
    }

    private static double StoredAccuracy(string checkpoint) => double.Parse(Metadata(checkpoint)["test_accuracy"], CultureInfo.InvariantCulture);

    [Fact]
    public void TrainWritesCheckpointAndMetricsAndEvalReproducesTheAccuracy()
    {
        string ckpt = fx.NewPath("student.safetensors"), metrics = fx.NewPath("m.jsonl");
        var (rc, output, err) = fx.Run("train", "--model", "student", "--epochs", "2", "--batch-size", "32", "--lr", "0.05",
            "--seed", "3", "--threads", "2", "--out", ckpt, "--metrics", metrics);
        Assert.True(rc == 0, err);
        Assert.Contains("student epoch 2/2", output);

        var lines = File.ReadAllLines(metrics);
        Assert.Equal(2, lines.Length);
        var records = lines.Select(l => JsonDocument.Parse(l).RootElement).ToList();
        foreach (var (r, i) in records.Select((r, i) => (r, i)))
        {
            Assert.Equal(i + 1, r.GetProperty("epoch").GetInt32());
            Assert.Equal("student", r.GetProperty("model").GetString());
            Assert.Equal(3, r.GetProperty("seed").GetInt32());
            foreach (var field in new[] { "train_loss", "train_acc", "test_acc", "seconds", "images_per_s" })
                Assert.True(double.IsFinite(r.GetProperty(field).GetDouble()), field);
            Assert.True(r.GetProperty("images_per_s").GetDouble() > 0);
        }
        // The pattern is easy: the second epoch's loss is lower and the student is far above chance (10%).
        Assert.True(records[1].GetProperty("train_loss").GetDouble() < records[0].GetProperty("train_loss").GetDouble());
        double finalAcc = records[1].GetProperty("test_acc").GetDouble();
        Assert.True(finalAcc > 0.5, $"test accuracy {finalAcc}");

        var meta = Metadata(ckpt);
        Assert.Equal("student", meta["model"]);
        Assert.Equal("2", meta["epoch"]);
        Assert.Equal("3", meta["seed"]);
        Assert.Equal(finalAcc, StoredAccuracy(ckpt));

        // eval rebuilds the model from the metadata and gets exactly the stored accuracy.
        var (rc2, evalOut, err2) = fx.Run("eval", ckpt);
        Assert.True(rc2 == 0, err2);
        string pct = (finalAcc * 100).ToString("F2", CultureInfo.InvariantCulture) + "%";
        Assert.Contains($"student, test accuracy {pct} on 100 images (stored at training: {pct})", evalOut);
        var (model, kind, _) = Checkpoint.Load(ckpt);
        using (model)
        {
            Assert.Equal(ModelKind.Student, kind);
            Assert.Equal(finalAcc, Trainer.Evaluate(model, FashionMnist.Load(FashionMnist.Split.Test, fx.DataDir)));
        }
    }

    [Fact]
    public void DistillReadsTheTeacherAndTrainsTheStudent()
    {
        string ckpt = fx.NewPath("kd.safetensors"), metrics = fx.NewPath("kd.jsonl");
        var (rc, output, err) = fx.Run("distill", "--teacher", fx.TeacherPath, "--method", "kd", "--temperature", "4", "--alpha", "0.9",
            "--epochs", "1", "--batch-size", "16", "--limit", "64", "--out", ckpt, "--metrics", metrics);
        Assert.True(rc == 0, err);
        Assert.Contains("kd student epoch 1/1", output);
        var meta = Metadata(ckpt);
        Assert.Equal("student", meta["model"]);
        Assert.Equal("kd", meta["method"]);
        Assert.Equal("4", meta["temperature"]);
        Assert.Equal("0.9", meta["alpha"]);
        Assert.Equal(fx.TeacherPath, meta["teacher"]);
        var record = JsonDocument.Parse(File.ReadAllLines(metrics).Single()).RootElement;
        Assert.Equal("kd", record.GetProperty("method").GetString());
        Assert.True(double.IsFinite(record.GetProperty("train_loss").GetDouble()));

        // With augmentation the teacher runs on every batch (no cached logits); it still trains.
        var (rc2, _, err2) = fx.Run("distill", "--teacher", fx.TeacherPath, "--epochs", "1", "--batch-size", "16", "--limit", "32", "--test-limit", "32", "--augment", "true", "--flip");
        Assert.True(rc2 == 0, err2);
    }

    [Fact]
    public void CachedTeacherLogitsEqualTheTeacherForward()
    {
        var (teacher, _, _) = Checkpoint.Load(fx.TeacherPath);
        using (teacher)
        {
            var train = FashionMnist.Load(FashionMnist.Split.Train, fx.DataDir).Take(24);
            var cache = TeacherLogits.Compute(teacher, train, new CliConsole(TextWriter.Null, TextWriter.Null, false));
            var loader = new DataLoader(train, 10, shuffle: true, seed: 9, transform: Trainer.Normalization);
            var order = loader.Order(0);
            int start = 0;
            using (Tensor.NoGrad())
                foreach (var batch in loader.Batches(0))
                    using (batch)
                    {
                        using var expected = teacher.Forward(batch.Images);
                        using var got = cache.Gather(order, start, batch.Labels);
                        TestUtil.AssertClose(expected.ToArray<float>().Select(v => (double)v).ToArray(), got, atol: 1e-5, rtol: 1e-5);
                        start += (int)batch.Labels.Size(0);
                    }
            Assert.Equal(24, start);
        }
    }

    [Fact]
    public void MainJobPrintsOneTable()
    {
        string dir = fx.NewPath("main");
        var (rc, output, err) = fx.Run("main-job", "--epochs", "1", "--teacher-epochs", "1", "--seeds", "2", "--limit", "32", "--test-limit", "32", "--batch-size", "16", "--out-dir", dir);
        Assert.True(rc == 0, err);
        Assert.Contains("│ teacher ", output);
        Assert.Contains("student from scratch", output);
        Assert.Contains("student + KD (T=4, α=0.9)", output);
        Assert.Contains("±", output);
        Assert.Contains("KD vs scratch:", output);
        Assert.True(File.Exists(Path.Combine(dir, "teacher.safetensors")));
        Assert.True(File.Exists(Path.Combine(dir, "kd-student-seed1.safetensors")));
        // teacher 1 epoch + 2 seeds × (scratch + kd) × 1 epoch
        Assert.Equal(5, File.ReadAllLines(Path.Combine(dir, "metrics.jsonl")).Length);

        // Reusing the teacher checkpoint skips its training.
        var (rc2, output2, err2) = fx.Run("main-job", "--epochs", "1", "--seeds", "1", "--limit", "32", "--test-limit", "32", "--teacher", fx.TeacherPath, "--out-dir", fx.NewPath("main2"));
        Assert.True(rc2 == 0, err2);
        Assert.Contains("loaded from", output2);
        Assert.Contains("teacher loaded from", output2);   // the header names the checkpoint, not an epoch count
        Assert.DoesNotContain("teacher 15 epochs", output2);
        Assert.Contains("loaded; eval", output2);          // the teacher's time is its evaluation, labelled so
    }

    [Fact]
    public void EvalLoadsAStateDictWithoutMetadata()
    {
        using var model = Trainer.Build(ModelKind.Student, 5);
        string path = fx.NewPath("plain.safetensors");
        SafeTensors.Save(path, model.StateDict());
        var (rc, output, err) = fx.Run("eval", path);
        Assert.True(rc == 0, err);
        Assert.Contains("student, test accuracy", output);
    }

    [Fact]
    public void BadOptionsGiveClearErrors()
    {
        string missing = Path.Combine(fx.Root, "nope.safetensors");
        var (rc, _, err) = fx.Run("eval", missing);
        Assert.Equal(1, rc);
        Assert.Contains($"engine eval: checkpoint not found: {missing}", err);

        (rc, _, err) = fx.Run("distill", "--teacher", missing, "--epochs", "1");
        Assert.Equal(1, rc);
        Assert.Contains("checkpoint not found", err);

        (rc, _, err) = fx.Run("distill", "--teacher", fx.TeacherPath, "--method", "fitnet");
        Assert.Equal(1, rc);
        Assert.Contains("--method fitnet: unknown distillation method; available: kd", err);

        string corrupt = fx.NewPath("corrupt.safetensors");
        File.WriteAllBytes(corrupt, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        (rc, _, err) = fx.Run("eval", corrupt);
        Assert.Equal(1, rc);
        Assert.Contains($"cannot read checkpoint {corrupt}", err);

        string studentCkpt = fx.NewPath("s.safetensors");
        using (var s = Trainer.Build(ModelKind.Student, 1)) Checkpoint.Save(studentCkpt, s, ModelKind.Student, new Dictionary<string, string>());
        (rc, _, err) = fx.Run("distill", "--teacher", studentCkpt);
        Assert.Equal(1, rc);
        Assert.Contains("holds a student; expected a teacher checkpoint", err);

        (rc, _, err) = fx.Run("eval", studentCkpt, "--model", "teacher");
        Assert.Equal(1, rc);
        Assert.Contains($"checkpoint {studentCkpt} does not fit the teacher model", err);

        (rc, _, err) = fx.Run("train", "--model", "student", "--device", "cuda");
        Assert.Equal(1, rc);
        Assert.Contains("--device cuda: ", err); // no CUDA driver or device on this machine: the reason is named

        (rc, _, err) = fx.Run("train", "--model", "student", "--device", "tpu");
        Assert.Equal(1, rc);
        Assert.Contains("unknown device 'tpu'", err);

        (rc, _, err) = fx.Run("train", "--model", "student", "--data", Path.Combine(fx.Root, "no-data"));
        Assert.Equal(1, rc);
        Assert.Contains("Fashion-MNIST not found", err);

        (rc, _, err) = fx.Run("train", "--model", "student", "--epochs", "0");
        Assert.Equal(1, rc);
        Assert.Contains("--epochs 0: expected at least 1", err);

        (rc, _, err) = fx.Run("distill", "--teacher", fx.TeacherPath, "--alpha", "2");
        Assert.Equal(1, rc);
        Assert.Contains("--alpha 2", err);

        (rc, _, _) = fx.Run("train", "--model", "giant");
        Assert.NotEqual(0, rc);
        (rc, _, _) = fx.Run("train");
        Assert.NotEqual(0, rc);
    }
}
