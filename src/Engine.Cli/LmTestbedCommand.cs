using System.CommandLine;
using System.Globalization;
using Engine.Distillation;
using Engine.Distillation.LanguageModel;
using Engine.Tensors.Cpu;

namespace Engine.Cli;

/// <summary>
/// <c>engine lm-testbed [--steps N] [--seeds K] [--out DIR] ...</c>: the language-model distillation testbed with
/// a known oracle (<see cref="LmTestbed"/>). Trains a teacher on oracle samples, distills students with every method
/// in the offline and online regimes, prints progress, and writes <c>DIR/lm-testbed.md</c> (the table),
/// <c>DIR/lm-testbed.jsonl</c> (one line per run with its curve) and <c>DIR/lm-testbed.svg</c> (the curves). The defaults (600 teacher steps, 300 student
/// steps × 8 methods × 2 regimes × 2 seeds) are sized for a few minutes on 2 CPU cores.
/// </summary>
public static class LmTestbedCommand
{
    /// <summary>Builds the command.</summary>
    public static Command Create()
    {
        var defaults = new LmTestbedSettings();
        var steps = new Option<int>("--steps") { Description = "Optimizer steps per student run.", DefaultValueFactory = _ => defaults.Steps };
        var seeds = new Option<int>("--seeds") { Description = "Student seeds (mean ± std over them).", DefaultValueFactory = _ => defaults.Seeds };
        var output = new Option<string>("--out") { Description = "Folder for lm-testbed.md, lm-testbed.jsonl and lm-testbed.svg.", DefaultValueFactory = _ => "lm-testbed-out" };
        var teacherSteps = new Option<int>("--teacher-steps") { Description = "Teacher optimizer steps.", DefaultValueFactory = _ => defaults.TeacherSteps };
        var teacherSequences = new Option<int>("--teacher-sequences") { Description = "Oracle sequences the teacher trains on.", DefaultValueFactory = _ => defaults.TeacherSequences };
        var batch = new Option<int>("--batch") { Description = "Sequences per step.", DefaultValueFactory = _ => defaults.BatchSize };
        var offline = new Option<int>("--offline-sequences") { Description = "Size of the offline regime's fixed set.", DefaultValueFactory = _ => defaults.OfflineSequences };
        var evalSequences = new Option<int>("--eval-sequences") { Description = "Held-out oracle sequences for the metric.", DefaultValueFactory = _ => defaults.EvalSequences };
        var methods = new Option<string>("--methods") { Description = "Comma-separated methods: ce, forward-kl, reverse-kl, jsd, skew-kl, taid, top-k, minilm (default all)." };
        var regimes = new Option<string>("--regimes") { Description = "Comma-separated regimes: offline, online (default both)." };
        var lr = new Option<double>("--lr") { Description = "Student peak learning rate.", DefaultValueFactory = _ => defaults.LearningRate };
        var seed = new Option<ulong>("--seed") { Description = "Base seed (oracle, teacher, data).", DefaultValueFactory = _ => defaults.Seed };
        var topK = new Option<int>("--top-k") { Description = "k of the top-k sparse teacher.", DefaultValueFactory = _ => defaults.Loss.TopK };
        var topKRest = new Option<string>("--top-k-rest") { Description = "Top-k teacher's missing mass: renormalize or uniform.", DefaultValueFactory = _ => "renormalize" };
        var miniLmLogit = new Option<double>("--minilm-logit-weight") { Description = "minilm: weight of the forward-KL logit term next to L_AT + L_VR (0: MiniLM alone).", DefaultValueFactory = _ => defaults.Loss.MiniLmLogitWeight };
        var miniLmWeight = new Option<double>("--minilm-weight") { Description = "minilm: weight of L_AT + L_VR.", DefaultValueFactory = _ => defaults.Loss.MiniLmWeight };
        var studentHeads = new Option<int>("--student-heads") { Description = "Attention heads of the students (minilm always uses the teacher's).", DefaultValueFactory = _ => defaults.Student.Heads };
        var threads = new Option<int?>("--threads") { Description = "CPU threads for the ops (default: all)." };
        var command = new Command("lm-testbed", "Distill small transformers from a teacher trained on a random-transformer oracle; report each student's exact KL to the oracle.")
        { steps, seeds, output, teacherSteps, teacherSequences, batch, offline, evalSequences, methods, regimes, lr, seed, topK, topKRest, miniLmLogit, miniLmWeight, studentHeads, threads };
        command.SetAction(r =>
        {
            var o = r.InvocationConfiguration.Output;
            var e = r.InvocationConfiguration.Error;
            LmTestbedSettings settings;
            try
            {
                settings = defaults with
                {
                    Steps = r.GetValue(steps),
                    Seeds = r.GetValue(seeds),
                    TeacherSteps = r.GetValue(teacherSteps),
                    TeacherSequences = r.GetValue(teacherSequences),
                    BatchSize = r.GetValue(batch),
                    OfflineSequences = r.GetValue(offline),
                    EvalSequences = r.GetValue(evalSequences),
                    LearningRate = r.GetValue(lr),
                    Seed = r.GetValue(seed),
                    Student = defaults.Student with { Heads = r.GetValue(studentHeads) },
                    Loss = defaults.Loss with { TopK = r.GetValue(topK), TopKRest = ParseRest(r.GetValue(topKRest) ?? "renormalize"), MiniLmLogitWeight = r.GetValue(miniLmLogit), MiniLmWeight = r.GetValue(miniLmWeight) },
                    Methods = ParseList(r.GetValue(methods), LmDistillationLoss.Parse, defaults.Methods),
                    Regimes = ParseList(r.GetValue(regimes), ParseRegime, defaults.Regimes),
                };
                settings.Validate();
                if (r.GetValue(threads) is int t) Parallelism.MaxThreads = t;
            }
            catch (ArgumentException ex)
            {
                e.WriteLine($"lm-testbed: {ex.Message}");
                return 2;
            }
            return Run(settings, r.GetValue(output) ?? "lm-testbed-out", "engine " + string.Join(' ', r.Tokens.Select(t => t.Value)), o, e);
        });
        return command;
    }

    /// <summary>Runs the experiment, prints progress and the table, writes the two files; returns the exit code.</summary>
    public static int Run(LmTestbedSettings settings, string outputFolder, string commandLine, TextWriter output, TextWriter error)
    {
        ArgumentNullException.ThrowIfNull(settings);
        LmTestbedResult result;
        try
        {
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"lm-testbed: {settings.Methods.Count} methods × {settings.Regimes.Count} regimes × {settings.Seeds} seeds, {settings.Steps} steps each; teacher {settings.TeacherSteps} steps; threads {Parallelism.MaxThreads}"));
            result = LmTestbed.Run(settings, line => output.WriteLine("  " + line));
        }
        catch (InvalidOperationException ex)
        {
            error.WriteLine($"lm-testbed: {ex.Message}");
            return 1;
        }
        Directory.CreateDirectory(outputFolder);
        string md = Path.Combine(outputFolder, "lm-testbed.md"), jsonl = Path.Combine(outputFolder, "lm-testbed.jsonl"), svg = Path.Combine(outputFolder, "lm-testbed.svg");
        var table = result.ToMarkdown(commandLine);
        File.WriteAllText(md, table);
        File.WriteAllText(jsonl, result.ToJsonLines());
        File.WriteAllText(svg, LmTestbedPlot.ToSvg(result));
        output.WriteLine();
        output.Write(table);
        output.WriteLine();
        output.WriteLine($"wrote {md}, {jsonl} and {svg} ({result.TotalSeconds:F0} s)");
        return 0;
    }

    private static IReadOnlyList<T> ParseList<T>(string? text, Func<string, T> parse, IReadOnlyList<T> fallback)
        => string.IsNullOrWhiteSpace(text) ? fallback : text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(parse).Distinct().ToArray();

    private static TopKRest ParseRest(string name) => name.ToLowerInvariant() switch
    {
        "renormalize" => TopKRest.Renormalize,
        "uniform" => TopKRest.Uniform,
        _ => throw new ArgumentException($"Unknown --top-k-rest '{name}'; expected renormalize or uniform."),
    };

    private static LmRegime ParseRegime(string name) => name.ToLowerInvariant() switch
    {
        "offline" => LmRegime.Offline,
        "online" => LmRegime.Online,
        _ => throw new ArgumentException($"Unknown regime '{name}'; expected offline or online."),
    };
}
