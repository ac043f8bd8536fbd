using Engine.Data;
using Engine.Distillation.Methods;
using Engine.Tensors;
using Engine.Tensors.NN;
using Engine.Tests.Cli;
using Engine.Tests.Distillation.Methods;

namespace Engine.Tests.DeviceTensors;

/// <summary>
/// <c>engine distill --method NAME --device opencl</c> for the methods besides kd (issue 8): MethodTrainer puts the
/// student, the teachers, the method's extra modules and every batch on the device, and the run follows the CPU run
/// of the same seed (per-epoch loss within 2e-3 relative, accuracies within one image, saved weights within 2e-3).
/// Data: the tiny synthetic Fashion-MNIST of <see cref="CliFixture"/>, 64 training images × 2 epochs (128 training
/// images seen) plus the teacher-logit pass and 40 test images per epoch.
/// </summary>
public class DeviceMethodCliTests(CliFixture fx) : IClassFixture<CliFixture>
{
    [BackendTheory("opencl")]
    [InlineData("dist")]
    [InlineData("taid")]
    [InlineData("bdkd")]
    [InlineData("defensive")]
    [InlineData("pskd")]
    [InlineData("dml")]
    [InlineData("scratch")]
    [InlineData("fitnets")]
    [InlineData("at")]
    [InlineData("rkd")]
    [InlineData("ban")] // generation 0 from the labels, then generation 1 from it: both on the device
    [InlineData("dkd")] // the DKD kernel (its composite form needs logsumexp, which has a device kernel too)
    [InlineData("pld")] // the Plackett-Luce kernel
    public void Method_OnOpenCL_FollowsTheCpuLossCurve(string method)
    {
        var info = MethodRegistry.Find(method)!;
        string[] args = ["distill", "--method", method, "--epochs", "2", "--limit", "64", "--test-limit", "40", "--batch-size", "16", "--seed", "9",
            .. info.Teacher == TeacherRequirement.Required ? new[] { "--teacher", fx.TeacherPath } : []];
        DeviceTrainingCliTests.SameCurve(DeviceTrainingCliTests.Train(fx, "cpu", args), DeviceTrainingCliTests.Train(fx, "opencl", args), 64, 40, method);
    }

    [BackendFact("opencl")]
    public void MultiTeacherWithTeachers_OnOpenCL_FollowsTheCpuLossCurve()
    {
        string second = fx.NewPath("teacher2.safetensors");
        var (rc, _, err) = fx.Run("train", "--model", "teacher", "--epochs", "1", "--limit", "32", "--test-limit", "16", "--batch-size", "16", "--seed", "3", "--out", second);
        Assert.True(rc == 0, err);
        string[] args = ["distill", "--method", "multi-teacher", "--teachers", fx.TeacherPath + "," + second, "--epochs", "2", "--limit", "64", "--test-limit", "40",
            "--batch-size", "16", "--seed", "9"];
        DeviceTrainingCliTests.SameCurve(DeviceTrainingCliTests.Train(fx, "cpu", args), DeviceTrainingCliTests.Train(fx, "opencl", args), 64, 40, "multi-teacher");
    }

    /// <summary>A linear student (fast on the emulator) whose loss goes through an op without a device kernel: float64 sin.</summary>
    private sealed class Float64Method(Module student) : DistillationMethod("float64-loss", student)
    {
        public override MethodLoss Loss(DistillationBatch batch, int update)
        {
            var logits = Student.Forward(batch.Images.Reshape(batch.Images.Size(0), -1));
            using var wide = logits.To(DType.Float64);
            using var sin = wide.Sin();
            return new MethodLoss(logits.Sum(), logits);
        }
    }

    [Fact]
    public void AnOpWithoutAKernelOnTheDevice_FailsNamingTheMethodTheDeviceAndTheOp()
    {
        var data = TrainerAndRobustnessTests.Tiny(4, 1);
        using var student = new Linear(784, 10, generator: new Generator(1));
        using var method = new Float64Method(student);
        var settings = new MethodTrainSettings { Epochs = 1, BatchSize = 4, Device = new Engine.Runtime.Device(Engine.Runtime.DeviceType.Emulator) };
        var e = Assert.Throws<NotSupportedException>(() => MethodTrainer.Train(method, settings, data, data));
        Assert.Contains("method 'float64-loss' cannot run on emulator:0", e.Message);
        Assert.Contains("sin", e.Message);
        Assert.Contains("float64", e.Message);
        // The student went back to the CPU (where the caller keeps it).
        Assert.All(student.Parameters(), p => Assert.Equal(Engine.Runtime.Device.Cpu, p.Device));
    }
}

/// <summary><c>engine distill --method multi-teacher --teachers a,b</c>: the option's checks (no training runs in these).</summary>
public class MultiTeacherCliOptionTests(CliFixture fx) : IClassFixture<CliFixture>
{
    private (int Rc, string Err) Distill(params string[] extra)
    {
        var (rc, _, err) = fx.Run(["distill", "--epochs", "1", "--limit", "16", "--test-limit", "10", "--batch-size", "16", .. extra]);
        return (rc, err);
    }

    [Fact]
    public void MissingFileIsNamed()
    {
        var (rc, err) = Distill("--method", "multi-teacher", "--teachers", fx.TeacherPath + ",/nonexistent/b.safetensors");
        Assert.Equal(1, rc);
        Assert.Contains("--teachers: checkpoint not found: /nonexistent/b.safetensors", err);
    }

    [Fact]
    public void InvalidFileIsNamed()
    {
        string junk = fx.NewPath("junk.safetensors");
        File.WriteAllText(junk, "this is not a safetensors file");
        var (rc, err) = Distill("--method", "multi-teacher", "--teachers", fx.TeacherPath + "," + junk);
        Assert.Equal(1, rc);
        Assert.Contains($"--teachers: cannot read checkpoint {junk}", err);
    }

    [Fact]
    public void MismatchedClassCountsAreNamed()
    {
        // The teacher's state dict with a 5-class classifier (the last matrix and its bias cut to 5 rows).
        var tensors = Engine.Tensors.Serialization.SafeTensors.Load(fx.TeacherPath, out var meta);
        string five = fx.NewPath("five.safetensors");
        try
        {
            string weight = tensors.Last(kv => kv.Value.Rank == 2).Key;
            string bias = weight[..^"weight".Length] + "bias";
            foreach (var key in new[] { weight, bias })
            {
                var full = tensors[key];
                using (var rows = full.Narrow(0, 0, 5)) tensors[key] = rows.Contiguous();
                full.Dispose();
            }
            Engine.Tensors.Serialization.SafeTensors.Save(five, tensors, meta);
        }
        finally
        {
            foreach (var t in tensors.Values) t.Dispose();
        }
        var (rc, err) = Distill("--method", "multi-teacher", "--teachers", fx.TeacherPath + "," + five);
        Assert.Equal(1, rc);
        Assert.Contains($"{five} classifies into 5 classes but {fx.TeacherPath} into 10", err);
    }

    [Fact]
    public void StudentCheckpointIsRefused()
    {
        string student = fx.NewPath("student.safetensors");
        var (rc0, _, err0) = fx.Run("train", "--model", "student", "--epochs", "1", "--limit", "16", "--test-limit", "10", "--batch-size", "16", "--out", student);
        Assert.True(rc0 == 0, err0);
        var (rc, err) = Distill("--method", "multi-teacher", "--teachers", fx.TeacherPath + "," + student);
        Assert.Equal(1, rc);
        Assert.Contains($"--teachers: {student} has no tensor", err);
        Assert.Contains("is it a teacher checkpoint", err);
    }

    [Fact]
    public void BadListsAndCombinationsAreRefused()
    {
        var (rc, err) = Distill("--method", "multi-teacher", "--teachers", fx.TeacherPath);
        Assert.Equal(1, rc);
        Assert.Contains("multi-teacher needs at least 2 teacher checkpoints; got 1", err);
        (rc, err) = Distill("--method", "multi-teacher", "--teachers", fx.TeacherPath + ",," + fx.TeacherPath);
        Assert.Equal(1, rc);
        Assert.Contains("an empty entry", err);
        (rc, err) = Distill("--method", "multi-teacher", "--teachers", fx.TeacherPath + "," + fx.TeacherPath);
        Assert.Equal(1, rc);
        Assert.Contains("is given 2 times", err);
        (rc, err) = Distill("--method", "dkd", "--teachers", fx.TeacherPath + "," + fx.TeacherPath);
        Assert.Equal(1, rc);
        Assert.Contains("--teachers is for --method multi-teacher", err);
        (rc, err) = Distill("--method", "multi-teacher", "--teacher", fx.TeacherPath, "--teachers", fx.TeacherPath + "," + fx.TeacherPath);
        Assert.Equal(1, rc);
        Assert.Contains("--teacher and --teachers", err);
    }
}
