using System.CommandLine;
using System.Globalization;
using Engine.Cli.Training;
using Engine.Data;
using Engine.Distillation.Experiments;
using Engine.Distillation.Methods;
using Engine.Tensors.NN.Models;

namespace Engine.Cli;

/// <summary>
/// <c>engine experiment NAME</c>: runs a registered experiment (<see cref="ExperimentRegistry"/>) with one
/// budget for every run, prints each run's progress and the Markdown table, and writes results.md, the
/// SVG charts and runs.jsonl to <c>--out-dir</c>.
/// </summary>
public static class ExperimentCommand
{
    /// <summary>The command.</summary>
    public static Command Create(Func<TextWriter, TextWriter, CliConsole> consoleFactory)
    {
        var name = new Argument<string>("NAME") { Description = $"The experiment: {ExperimentRegistry.Names}." };
        var epochs = new Option<int>("--epochs") { Description = "Epochs of every student run.", DefaultValueFactory = _ => 10 };
        var teacherEpochs = new Option<int>("--teacher-epochs") { Description = "Epochs of the teacher, if one is trained.", DefaultValueFactory = _ => 15 };
        var seeds = new Option<int>("--seeds") { Description = "Runs per method (seeds 0 .. N-1); the table shows mean ± std.", DefaultValueFactory = _ => 3 };
        var limit = new Option<int?>("--limit") { Description = "Train on the first N training images only (quick runs)." };
        var testLimit = new Option<int?>("--test-limit") { Description = "Evaluate on the first N test images only." };
        var batch = new Option<int>("--batch-size") { Description = "Images per step.", DefaultValueFactory = _ => 128 };
        var lr = new Option<double>("--lr") { Description = "Peak SGD learning rate (warmup, then cosine to 0).", DefaultValueFactory = _ => 0.05 };
        var warmup = new Option<double>("--warmup-epochs") { Description = "Epochs of linear warmup (capped at a fifth of the run).", DefaultValueFactory = _ => 1.0 };
        var threads = new Option<int?>("--threads") { Description = "Threads for the CPU ops (default: all processors)." };
        var data = new Option<string?>("--data") { Description = $"Directory of the Fashion-MNIST IDX files (default {FashionMnist.DefaultDirectory})." };
        var outDir = new Option<string?>("--out-dir") { Description = "Where results.md, the SVG charts and runs.jsonl go (default runs/experiments/NAME)." };
        var teacher = new Option<string?>("--teacher") { Description = "Use this teacher checkpoint instead of training one." };
        var extraTeachers = new Option<string?>("--extra-teachers") { Description = "Further teacher checkpoints after --teacher (comma-separated), for multi-teacher: with them the default method list gains multi-teacher." };
        var methods = new Option<string?>("--methods") { Description = "Comma-separated methods (registry names), each optionally with options: NAME[:key=value]..., keys temperature, alpha, beta, feature_weight, peers (e.g. kd,dkd:beta=1)." };
        var command = new Command("experiment", "Run an experiment (a list of trainings with one budget) and write a Markdown table and SVG charts.")
            { name, epochs, teacherEpochs, seeds, limit, testLimit, batch, lr, warmup, threads, data, outDir, teacher, extraTeachers, methods };
        command.SetAction(r =>
        {
            var console = consoleFactory(r.InvocationConfiguration.Output, r.InvocationConfiguration.Error);
            try
            {
                string n = r.GetValue(name)!;
                var experiment = ExperimentRegistry.Find(n) ?? throw new CliException($"unknown experiment '{n}'; available: {ExperimentRegistry.Names}.");
                var check = new TrainSettings
                {
                    Epochs = r.GetValue(epochs), BatchSize = r.GetValue(batch), LearningRate = r.GetValue(lr), WarmupEpochs = r.GetValue(warmup),
                    Threads = r.GetValue(threads), Limit = r.GetValue(limit), TestLimit = r.GetValue(testLimit),
                };
                Trainer.Prepare(check);
                if (r.GetValue(seeds) < 1) throw new CliException($"--seeds {r.GetValue(seeds)}: expected at least 1.");
                if (r.GetValue(teacherEpochs) < 1) throw new CliException($"--teacher-epochs {r.GetValue(teacherEpochs)}: expected at least 1.");
                string dir = r.GetValue(outDir) ?? Path.Combine("runs", "experiments", experiment.Name);
                FashionMnistNet? given = null;
                if (r.GetValue(teacher) is string path)
                {
                    var (model, kind, _) = Checkpoint.Load(path);
                    if (kind != ModelKind.Teacher) { model.Dispose(); throw new CliException($"--teacher {path} holds a {Checkpoint.KindName(kind)}; expected a teacher checkpoint."); }
                    given = model;
                }
                IReadOnlyList<FashionMnistNet> extra = [];
                if (r.GetValue(extraTeachers) is string list)
                {
                    if (given is null) { throw new CliException("--extra-teachers: give the first teacher with --teacher."); }
                    var paths = list.Split(',').Select(p => p.Trim()).ToList();
                    if (paths.Any(p => p.Length == 0)) { given.Dispose(); throw new CliException($"--extra-teachers '{list}': an empty entry; expected comma-separated checkpoint paths."); }
                    try { extra = MethodRun.LoadTeachers(paths, "--extra-teachers"); }
                    catch { given.Dispose(); throw; }
                }
                using (given)
                try
                {
                    var settings = new ExperimentSettings
                    {
                        AdditionalTeachers = extra,
                        Epochs = check.Epochs, TeacherEpochs = r.GetValue(teacherEpochs), Seeds = r.GetValue(seeds), Limit = check.Limit, TestLimit = check.TestLimit,
                        DataDirectory = r.GetValue(data), Teacher = given,
                        Methods = r.GetValue(methods)?.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries),
                        Training = new MethodTrainSettings
                        {
                            BatchSize = check.BatchSize, LearningRate = check.LearningRate, WarmupEpochs = check.WarmupEpochs,
                            Normalization = Trainer.Normalization, EvalBatchSize = Trainer.EvalBatchSize,
                        },
                        SaveTeacher = m => Checkpoint.Save(Path.Combine(dir, "teacher.safetensors"), (FashionMnistNet)m, ModelKind.Teacher,
                            new Dictionary<string, string> { ["method"] = "ce", ["epoch"] = r.GetValue(teacherEpochs).ToString(CultureInfo.InvariantCulture) }),
                    };
                    ExperimentReport report;
                    try
                    {
                        report = experiment.Run(settings, new CliTrainingObserver(console), console.Out);
                    }
                    catch (Exception e) when (e is ArgumentException or TrainingDivergedException)
                    {
                        throw new CliException(e.Message, e);
                    }
                    report.Command = "engine " + string.Join(" ", r.Tokens.Select(t => t.Value));
                    string md = report.WriteTo(dir);
                    console.Out.WriteLine();
                    console.Out.Write(report.MarkdownTable());
                    console.Out.WriteLine($"wrote {md}, {string.Join(", ", report.Charts.Select(c => Path.Combine(dir, c.FileName)))}");
                }
                finally
                {
                    foreach (var m in extra) m.Dispose();
                }
                return 0;
            }
            catch (Exception e) when (e is CliException or DatasetNotFoundException or DataFormatException or IOException or UnauthorizedAccessException)
            {
                console.Error.WriteLine($"engine experiment: {e.Message}");
                return 1;
            }
        });
        return command;
    }
}
