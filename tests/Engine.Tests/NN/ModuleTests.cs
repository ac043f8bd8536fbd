using Engine.Tensors;
using Engine.Tensors.NN;
using Engine.Tensors.NN.Models;

namespace Engine.Tests.NN;

public class ModuleTests
{
    /// <summary>The keys of PyTorch's Teacher().state_dict(), in order (torch_bench.py's layer list: conv/bn at 0,1 3,4 7,8; linear at 12, 15).</summary>
    private static string[] PyTorchTeacherKeys()
    {
        var keys = new List<string>();
        foreach (var (conv, bn) in new[] { (0, 1), (3, 4), (7, 8) })
        {
            keys.Add($"f.{conv}.weight");
            keys.Add($"f.{conv}.bias");
            foreach (var n in new[] { "weight", "bias", "running_mean", "running_var", "num_batches_tracked" }) keys.Add($"f.{bn}.{n}");
        }
        keys.AddRange(["f.12.weight", "f.12.bias", "f.15.weight", "f.15.bias"]);
        return keys.ToArray();
    }

    [Fact]
    public void Teacher_StateDictNames_AreExactlyPyTorchs()
    {
        using var teacher = FashionMnistModels.Teacher(new Generator(1));
        var sd = teacher.StateDict();
        Assert.Equal(PyTorchTeacherKeys(), sd.Keys);
        Assert.Equal(new long[] { 32, 1, 3, 3 }, sd["f.0.weight"].ShapeArray());
        Assert.Equal(new long[] { 64 }, sd["f.4.running_var"].ShapeArray());
        Assert.Equal(DType.Int64, sd["f.8.num_batches_tracked"].DType);
        Assert.Equal(0, sd["f.8.num_batches_tracked"].Rank);
        Assert.Equal(new long[] { 256, 6272 }, sd["f.12.weight"].ShapeArray());
        Assert.Equal(new long[] { 10, 256 }, sd["f.15.weight"].ShapeArray());
        Assert.Equal(sd.Keys.Where(k => !k.Contains("running") && !k.Contains("num_batches")), teacher.NamedParameters().Select(p => p.Name));
        Assert.Equal(9, teacher.Buffers().Count());
    }

    [Fact]
    public void FashionMnist_ParameterCounts_FollowFromTheLayerShapes()
    {
        static long Conv(long i, long o) => o * i * 3 * 3 + o;
        static long Bn(long c) => 2 * c;
        static long Fc(long i, long o) => o * i + o;
        long teacher = Conv(1, 32) + Bn(32) + Conv(32, 64) + Bn(64) + Conv(64, 128) + Bn(128) + Fc(128 * 7 * 7, 256) + Fc(256, 10);
        long student = Conv(1, 8) + Conv(8, 16) + Fc(16 * 7 * 7, 10);
        Assert.Equal(1_701_578, teacher);
        Assert.Equal(9_098, student);
        using var t = FashionMnistModels.Teacher();
        using var s = FashionMnistModels.Student();
        Assert.Equal(teacher, t.ParameterCount());
        Assert.Equal(FashionMnistModels.TeacherParameterCount, t.ParameterCount());
        Assert.Equal(student, s.ParameterCount());
        Assert.Equal(FashionMnistModels.StudentParameterCount, s.ParameterCount());
        Assert.Equal(["f.0.weight", "f.0.bias", "f.3.weight", "f.3.bias", "f.7.weight", "f.7.bias"], s.StateDict().Keys);
    }

    [Fact]
    public void FashionMnist_Forward_Backward_Shapes_AndInputError()
    {
        using var x = Tensor.Randn([2, 1, 28, 28], generator: new Generator(3));
        using var teacher = FashionMnistModels.Teacher(new Generator(1));
        using (var y = teacher.Forward(x)) Assert.Equal(new long[] { 2, 10 }, y.ShapeArray());
        using var student = FashionMnistModels.Student(new Generator(2));
        using (var y = student.Forward(x))
        using (var loss = y.Sum())
        {
            Assert.Equal(new long[] { 2, 10 }, y.ShapeArray());
            loss.Backward();
        }
        Assert.All(student.Parameters(), p => Assert.Equal(p.ShapeArray(), p.Grad!.ShapeArray()));
        student.ZeroGrad();
        Assert.All(student.Parameters(), p => Assert.Null(p.Grad));
        using var rgb = Tensor.Zeros([2, 3, 28, 28]);
        Assert.Contains("[2, 3, 28, 28]", Assert.Throws<ArgumentException>(() => student.Forward(rgb)).Message);
        var e = Assert.Throws<ArgumentException>(() => student.F[0].Forward(rgb));
        Assert.Contains("Conv2d(1, 8", e.Message);
        Assert.Contains("[N, 1, H, W]", e.Message);
    }

    [Fact]
    public void LoadStateDict_RoundTrip_GivesIdenticalOutputs()
    {
        using var a = FashionMnistModels.Student(new Generator(10));
        using var b = FashionMnistModels.Student(new Generator(11));
        using var x = Tensor.Randn([3, 1, 28, 28], generator: new Generator(4));
        using (var ya = a.Forward(x))
        using (var yb = b.Forward(x))
            Assert.NotEqual(ya.ToArray<float>(), yb.ToArray<float>());
        var result = b.LoadStateDict(a.StateDict());
        Assert.Empty(result.MissingKeys);
        Assert.Empty(result.UnexpectedKeys);
        using (var ya = a.Forward(x))
        using (var yb = b.Forward(x))
            Assert.Equal(ya.ToArray<float>(), yb.ToArray<float>());
        Assert.True(b.Parameters().All(p => p.IsLeaf && p.RequiresGrad));

        // Buffers travel too: train a teacher's BN one step, copy, compare in eval mode.
        using var t1 = FashionMnistModels.Teacher(new Generator(1));
        using var t2 = FashionMnistModels.Teacher(new Generator(2));
        t1.Forward(x).Dispose();
        t2.LoadStateDict(t1.StateDict());
        Assert.Equal(1L, t2.StateDict()["f.4.num_batches_tracked"].Item<long>());
        t1.Eval();
        t2.Eval();
        using var y1 = t1.Forward(x);
        using var y2 = t2.Forward(x);
        Assert.Equal(y1.ToArray<float>(), y2.ToArray<float>());
    }

    [Fact]
    public void LoadStateDict_ListsEveryProblem_AndCopiesNothing()
    {
        using var model = FashionMnistModels.Teacher(new Generator(1));
        using var donor = FashionMnistModels.Teacher(new Generator(2));
        var sd = new Dictionary<string, Tensor>(donor.StateDict());
        sd.Remove("f.1.running_var");
        sd.Remove("f.15.bias");
        using var extra = Tensor.Zeros([3]);
        sd["f.16.weight"] = extra;
        using var wrongShape = Tensor.Zeros([32, 3, 3, 3]);
        sd["f.0.weight"] = wrongShape;
        using var wrongBias = Tensor.Zeros([11]);
        sd["f.12.bias"] = wrongBias;
        var before = model.StateDict()["f.3.weight"].ToArray<float>();

        var e = Assert.Throws<StateDictException>(() => model.LoadStateDict(sd));
        Assert.Contains("missing key 'f.1.running_var'", e.Message);
        Assert.Contains("missing key 'f.15.bias'", e.Message);
        Assert.Contains("unexpected key 'f.16.weight'", e.Message);
        Assert.Contains("size mismatch for 'f.0.weight'", e.Message);
        Assert.Contains("[32, 3, 3, 3]", e.Message);
        Assert.Contains("[32, 1, 3, 3]", e.Message);
        Assert.Contains("size mismatch for 'f.12.bias'", e.Message);
        Assert.Equal(["f.1.running_var", "f.15.bias"], e.MissingKeys);
        Assert.Equal(["f.16.weight"], e.UnexpectedKeys);
        Assert.Equal(["f.0.weight", "f.12.bias"], e.MismatchedKeys);
        Assert.Equal(before, model.StateDict()["f.3.weight"].ToArray<float>()); // validated before copying

        // Not strict: missing/unexpected are returned, but a size mismatch is still an error (as in PyTorch).
        var e2 = Assert.Throws<StateDictException>(() => model.LoadStateDict(sd, strict: false));
        Assert.DoesNotContain("missing key", e2.Message);
        Assert.Contains("size mismatch for 'f.0.weight'", e2.Message);
        sd["f.0.weight"] = donor.StateDict()["f.0.weight"];
        sd["f.12.bias"] = donor.StateDict()["f.12.bias"];
        var r = model.LoadStateDict(sd, strict: false);
        Assert.Equal(["f.1.running_var", "f.15.bias"], r.MissingKeys);
        Assert.Equal(["f.16.weight"], r.UnexpectedKeys);
        Assert.Equal(donor.StateDict()["f.3.weight"].ToArray<float>(), model.StateDict()["f.3.weight"].ToArray<float>());
    }

    private sealed class TwoHeads : Module
    {
        public TwoHeads(Linear shared)
        {
            RegisterModule("a", shared);
            RegisterModule("b", shared);
            RegisterBuffer("scratch", Tensor.Zeros([2]), persistent: false);
            RegisterParameter("absent", null);
        }

        public void Register(string name) => RegisterParameter(name, Tensor.Zeros([1]));

        public override Tensor Forward(Tensor input) => input.Alias();
    }

    [Fact]
    public void Registration_Sharing_NonPersistentBuffers_AndErrors()
    {
        var lin = new Linear(2, 2);
        using var m = new TwoHeads(lin);
        Assert.Equal(["a.weight", "a.bias"], m.NamedParameters().Select(p => p.Name)); // shared tensors once
        Assert.Equal(["a.weight", "a.bias", "b.weight", "b.bias"], m.StateDict().Keys); // PyTorch lists both names
        Assert.Equal(["scratch"], m.NamedBuffers().Select(b => b.Name));
        Assert.Equal(6, m.ParameterCount());
        Assert.Contains("already registered", Assert.Throws<ArgumentException>(() => m.Register("a")).Message);
        Assert.Contains("'.'", Assert.Throws<ArgumentException>(() => m.Register("x.y")).Message);
        Assert.Equal(["", "a", "b"], m.NamedModules().Select(x => x.Name));
    }

    [Fact]
    public void TrainEval_RequiresGrad_To_AndDispose()
    {
        var model = FashionMnistModels.Teacher(new Generator(1));
        Assert.True(model.NamedModules().All(x => x.Module.Training));
        model.Eval();
        Assert.True(model.NamedModules().All(x => !x.Module.Training));
        model.Train();
        Assert.True(model.F[14].Training);

        model.RequiresGrad_(false);
        Assert.Equal(0, model.ParameterCount(trainableOnly: true));
        model.RequiresGrad_();
        Assert.Equal(model.ParameterCount(), model.ParameterCount(trainableOnly: true));

        model.To(DType.Float64);
        var sd = model.StateDict();
        Assert.All(sd.Where(kv => !kv.Key.EndsWith("num_batches_tracked", StringComparison.Ordinal)), kv => Assert.Equal(DType.Float64, kv.Value.DType));
        Assert.Equal(DType.Int64, sd["f.1.num_batches_tracked"].DType);
        Assert.True(model.Parameters().All(p => p.IsLeaf && p.RequiresGrad));
        Assert.Equal(DType.Float64, ((Conv2d)model.F[0]).Weight.DType);
        using (var x = Tensor.Randn([1, 1, 28, 28], DType.Float64))
        using (var y = model.Eval().Forward(x))
            Assert.Equal(DType.Float64, y.DType);
        Assert.StartsWith("FashionMnistNet(\n  (f): Sequential(\n    (0): Conv2d(1, 32, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))", model.ToString());

        var tensors = model.StateDict().Values.ToList();
        model.Dispose();
        Assert.All(tensors, t => Assert.True(t.IsDisposed));
    }
}
