using System.Diagnostics;
using System.Globalization;
using System.Text.Json;

namespace Engine.Benchmarks;

/// <summary>The peer's result for one case, parsed from torch_bench.py's JSON line.</summary>
/// <param name="Json">The whole line.</param>
/// <param name="MedianMs">The peer's median time.</param>
/// <param name="PeakRssMb">The peer process's peak RSS, MiB.</param>
/// <param name="Peer">The peer's description (e.g. <c>torch 1.13.1 cpu</c>).</param>
public sealed record PeerResult(string Json, double MedianMs, double PeakRssMb, string Peer);

/// <summary>
/// Runs <c>torch_bench.py NAME</c> (PyTorch on this machine, the same shapes and math) in a fresh
/// process, so Engine and the peer are measured in the same session, one after the other.
/// </summary>
public static class PeerRunner
{
    /// <summary>The interpreter: Debian's system Python, where <c>python3-torch</c> installs.</summary>
    public const string Python = "/usr/bin/python3";

    /// <summary>
    /// Finds torch_bench.py: <paramref name="explicitPath"/>, else <c>$ENGINE_PEER_SCRIPT</c>, else
    /// <c>shared/peers/torch_bench.py</c> or <c>../shared/peers/torch_bench.py</c> next to the working
    /// directory or any of its parents.
    /// </summary>
    /// <exception cref="FileNotFoundException">Not found (the message lists where it looked).</exception>
    public static string FindScript(string? explicitPath = null)
    {
        var candidates = new List<string>();
        if (explicitPath is not null) candidates.Add(explicitPath);
        else
        {
            if (Environment.GetEnvironmentVariable("ENGINE_PEER_SCRIPT") is { Length: > 0 } env) candidates.Add(env);
            for (var dir = new DirectoryInfo(Environment.CurrentDirectory); dir is not null; dir = dir.Parent)
            {
                candidates.Add(Path.Combine(dir.FullName, "shared", "peers", "torch_bench.py"));
                candidates.Add(Path.Combine(dir.FullName, "..", "shared", "peers", "torch_bench.py"));
            }
        }
        foreach (var c in candidates)
            if (File.Exists(c)) return Path.GetFullPath(c);
        throw new FileNotFoundException($"bench --peer: torch_bench.py not found; looked at {string.Join(", ", candidates.Take(4))}{(candidates.Count > 4 ? ", ..." : "")}. Pass --peer-script PATH or set ENGINE_PEER_SCRIPT.");
    }

    /// <summary>Runs one case of the peer script and parses its JSON line.</summary>
    /// <exception cref="InvalidOperationException">Python or torch missing, the script failed, or printed no JSON.</exception>
    public static PeerResult Run(string script, string name, int threads, int runs)
    {
        if (!File.Exists(Python))
            throw new InvalidOperationException($"bench --peer: {Python} not found; install the peer with: apt-get install -y python3-torch libopenblas0-pthread");
        var psi = new ProcessStartInfo(Python) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { script, name, "--threads", threads.ToString(CultureInfo.InvariantCulture), "--runs", runs.ToString(CultureInfo.InvariantCulture) })
            psi.ArgumentList.Add(a);
        using var p = Process.Start(psi) ?? throw new InvalidOperationException($"bench --peer: could not start {Python}");
        var stderr = p.StandardError.ReadToEndAsync();
        string stdout = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0)
        {
            string err = stderr.Result;
            string hint = err.Contains("No module named 'torch'", StringComparison.Ordinal) ? " Install it with: apt-get install -y python3-torch libopenblas0-pthread." : "";
            throw new InvalidOperationException($"bench --peer: torch_bench.py {name} exited with {p.ExitCode}.{hint} stderr: {err.Trim()}");
        }
        var line = stdout.Split('\n').LastOrDefault(l => l.TrimStart().StartsWith('{'))
                   ?? throw new InvalidOperationException($"bench --peer: torch_bench.py {name} printed no JSON: {stdout.Trim()}");
        using var doc = JsonDocument.Parse(line);
        var root = doc.RootElement;
        return new PeerResult(line.Trim(), root.GetProperty("median_ms").GetDouble(),
            root.TryGetProperty("peak_rss_mb", out var rss) ? rss.GetDouble() : 0,
            root.TryGetProperty("peer", out var peer) ? peer.GetString() ?? "" : "");
    }
}
