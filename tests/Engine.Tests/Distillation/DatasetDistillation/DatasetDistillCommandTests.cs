using System.Buffers.Binary;
using System.CommandLine;
using Engine.Cli;
using Engine.Data;
using Engine.Distillation.DatasetDistillation;

namespace Engine.Tests.Distillation.DatasetDistillation;

/// <summary>
/// <c>engine dataset-distill</c> end to end on a tiny fake Fashion-MNIST (100 training and 30 test images
/// of 28×28, a class-specific bright square plus noise), with a narrow network and a few iterations.
/// </summary>
public sealed class DatasetDistillCommandTests : IDisposable
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), "engine-dd-tests-" + Guid.NewGuid().ToString("N")[..8]);

    public DatasetDistillCommandTests()
    {
        Directory.CreateDirectory(Path.Combine(_root, "data"));
        WriteSplit("train-images-idx3-ubyte", "train-labels-idx1-ubyte", 100, seed: 1);
        WriteSplit("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 30, seed: 2);
    }

    private void WriteSplit(string images, string labels, int count, int seed)
    {
        var rng = new Random(seed);
        var pixels = new byte[count * 784];
        var ys = new byte[count];
        for (int i = 0; i < count; i++)
        {
            int c = i % 10;
            ys[i] = (byte)c;
            for (int p = 0; p < 784; p++) pixels[i * 784 + p] = (byte)rng.Next(0, 60);
            int top = 2 + c / 5 * 12, left = 2 + c % 5 * 5;
            for (int y = 0; y < 6; y++)
                for (int x = 0; x < 4; x++) pixels[i * 784 + (top + y) * 28 + left + x] = 250;
        }
        Idx.Write(Path.Combine(_root, "data", images), [count, 28, 28], pixels);
        Idx.Write(Path.Combine(_root, "data", labels), [count], ys);
    }

    private (int Rc, string Out, string Err) Run(params string[] args)
    {
        var root = new RootCommand("test") { DatasetDistillCommand.Create() };
        var output = new StringWriter();
        var error = new StringWriter();
        int rc = root.Parse(["dataset-distill", .. args, "--data", Path.Combine(_root, "data")]).Invoke(new InvocationConfiguration { Output = output, Error = error });
        return (rc, output.ToString(), error.ToString());
    }

    [Theory]
    [InlineData("dm")]
    [InlineData("dc")]
    [InlineData("mtt")]
    public void Method_WritesPngSafetensorsAndTableRow(string method)
    {
        string dir = Path.Combine(_root, method);
        var (rc, output, err) = Run("--method", method, "--ipc", "2", "--iterations", "2", "--width", "4", "--real-batch", "4", "--eval-epochs", "2",
            "--eval-seeds", "2", "--log-every", "1", "--experts", "1", "--max-start-epoch", "0", "--expert-epochs", "1", "--syn-steps", "2", "--out", dir);
        Assert.True(rc == 0, err + output);
        Assert.Contains("iteration 2/2: objective", output);
        Assert.Contains($"| {method.ToUpperInvariant()} | 2 | 2 | real |", File.ReadAllText(Path.Combine(dir, "result.md")));

        // synthetic.png: 10 rows of 2 images of 28×28 with a 2-pixel border: 2·30+2 = 62 wide, 10·30+2 = 302 high.
        var png = File.ReadAllBytes(Path.Combine(dir, "synthetic.png"));
        Assert.Equal(0x89, png[0]);
        Assert.Equal(62u, BinaryPrimitives.ReadUInt32BigEndian(png.AsSpan(16)));
        Assert.Equal(302u, BinaryPrimitives.ReadUInt32BigEndian(png.AsSpan(20)));

        using var syn = SyntheticSet.Load(Path.Combine(dir, "synthetic.safetensors"));
        Assert.Equal(20, syn.Count);
        Assert.Equal(2, syn.ImagesPerClass);
    }

    [Fact]
    public void BadArguments_AreOneLineErrors()
    {
        var (rc, _, err) = Run("--method", "dm", "--ipc", "0", "--out", Path.Combine(_root, "bad"));
        Assert.Equal(1, rc);
        Assert.Contains("--ipc 0", err);
        (rc, _, err) = Run("--method", "dm", "--ipc", "11", "--iterations", "1", "--out", Path.Combine(_root, "bad2"));
        Assert.Equal(1, rc);
        Assert.Contains("fewer than the 11 images per class", err);
        (rc, _, _) = Run("--method", "kd");
        Assert.NotEqual(0, rc);
    }

    public void Dispose()
    {
        try { Directory.Delete(_root, recursive: true); } catch (IOException) { }
    }
}
