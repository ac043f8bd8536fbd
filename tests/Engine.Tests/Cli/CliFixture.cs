using Engine.Data;

namespace Engine.Tests.Cli;

/// <summary>
/// A tiny synthetic Fashion-MNIST in IDX files (256 train, 100 test images) in a temp directory: class c
/// is a bright 6×6 square at one of 10 positions plus uniform noise, so a small CNN learns it in an epoch
/// or two. Also a teacher checkpoint trained once for the distill tests.
/// </summary>
public sealed class CliFixture : IDisposable
{
    public CliFixture()
    {
        Root = Path.Combine(Path.GetTempPath(), "engine-cli-tests-" + Guid.NewGuid().ToString("N")[..8]);
        DataDir = Path.Combine(Root, "data");
        Directory.CreateDirectory(DataDir);
        WriteSplit("train-images-idx3-ubyte", "train-labels-idx1-ubyte", 256, seed: 1, gzip: true);
        WriteSplit("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 100, seed: 2, gzip: false);
        TeacherPath = Path.Combine(Root, "teacher.safetensors");
        var (rc, _, err) = Run("train", "--model", "teacher", "--epochs", "1", "--limit", "32", "--test-limit", "32", "--batch-size", "16", "--out", TeacherPath);
        if (rc != 0) throw new InvalidOperationException("fixture: teacher training failed: " + err);
    }

    public string Root { get; }

    public string DataDir { get; }

    public string TeacherPath { get; }

    public string NewPath(string name) => Path.Combine(Root, Guid.NewGuid().ToString("N")[..6] + "-" + name);

    /// <summary>Runs <c>engine ARGS --data DIR</c> in-process (the data option is added for train/distill/eval/main-job).</summary>
    public (int ExitCode, string Out, string Err) Run(params string[] args)
    {
        var full = args.Length > 0 && args[0] is "train" or "distill" or "eval" or "main-job" && !args.Contains("--data")
            ? [.. args, "--data", DataDir] : args;
        var output = new StringWriter();
        var error = new StringWriter();
        int rc = Engine.Cli.Program.Run(full, output, error);
        return (rc, output.ToString(), error.ToString());
    }

    private void WriteSplit(string images, string labels, int count, int seed, bool gzip)
    {
        var rng = new Random(seed);
        var pixels = new byte[count * 28 * 28];
        var y = new byte[count];
        for (int i = 0; i < count; i++)
        {
            int c = i % 10;
            y[i] = (byte)c;
            for (int p = 0; p < 28 * 28; p++) pixels[i * 784 + p] = (byte)rng.Next(0, 60);
            int r0 = 2 + (c / 5) * 13 + rng.Next(0, 3), c0 = 1 + (c % 5) * 5 + rng.Next(0, 2);
            for (int r = r0; r < r0 + 6 && r < 28; r++)
                for (int q = c0; q < c0 + 4 && q < 28; q++)
                    pixels[i * 784 + r * 28 + q] = (byte)rng.Next(200, 256);
        }
        string ext = gzip ? ".gz" : "";
        Idx.Write(Path.Combine(DataDir, images + ext), [count, 28, 28], pixels, gzip);
        Idx.Write(Path.Combine(DataDir, labels + ext), [count], y, gzip);
    }

    public void Dispose()
    {
        try { Directory.Delete(Root, recursive: true); } catch (IOException) { }
    }
}
