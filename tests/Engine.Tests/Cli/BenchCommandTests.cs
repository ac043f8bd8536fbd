using System.Text.Json;
using Engine.Benchmarks;

namespace Engine.Tests.Cli;

/// <summary>
/// <c>engine bench</c>: every case validates and runs at its quick shape and prints one JSON object with
/// the fields the issues ask for; unknown names and a missing peer script fail with clear messages.
/// </summary>
public class BenchCommandTests
{
    private static (int Rc, string Output, string Error) Run(params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        int rc = Engine.Cli.Program.Run(args, output, error);
        return (rc, output.ToString(), error.ToString());
    }

    public static TheoryData<string> CaseNames()
    {
        var data = new TheoryData<string>();
        foreach (var c in BenchRunner.Cases) data.Add(c.Name);
        return data;
    }

    [Theory]
    [MemberData(nameof(CaseNames))]
    public void EveryCaseValidatesAndPrintsJsonAtItsQuickShape(string name)
    {
        var (rc, output, error) = Run("bench", name, "--quick", "--runs", "1", "--threads", "2", "--json");
        Assert.True(rc == 0, error);
        var line = Assert.Single(output.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        var json = JsonDocument.Parse(line).RootElement;
        Assert.Equal(name, json.GetProperty("name").GetString());
        Assert.True(json.GetProperty("median_ms").GetDouble() > 0);
        Assert.True(json.GetProperty("peak_bytes").GetInt64() > 0);
        Assert.True(json.GetProperty("shape").GetArrayLength() > 0);
    }

    [Fact]
    public void ListShowsEveryCase()
    {
        var (rc, output, _) = Run("bench", "--list");
        Assert.Equal(0, rc);
        foreach (var c in BenchRunner.Cases) Assert.Contains(c.Name, output);
        Assert.Contains("softmax-t", output);
    }

    [Fact]
    public void UnknownCaseNamesTheKnownOnes()
    {
        var (rc, _, error) = Run("bench", "no-such-case");
        Assert.Equal(2, rc);
        Assert.Contains("unknown case 'no-such-case'", error);
        Assert.Contains("softmax-t", error);
    }

    [Fact]
    public void MissingPeerScriptIsAClearError()
    {
        var (rc, _, error) = Run("bench", "softmax-t", "--peer", "--peer-script", "/nonexistent/torch_bench.py");
        Assert.Equal(2, rc);
        Assert.Contains("torch_bench.py not found", error);
    }
}
