using System.Text.Json;
using Engine.Distillation.Methods;

namespace Engine.Cli.Training;

/// <summary>
/// Shows a <see cref="MethodTrainer"/> run on the CLI console (progress bars or quarter lines, one line
/// per epoch) and appends one JSON line per epoch to <paramref name="metricsPath"/> when given (the
/// fields of <c>engine train --metrics</c>: model, method, seed, epoch, train_loss, train_acc, test_acc,
/// seconds, images_per_s, lr).
/// </summary>
public sealed class CliTrainingObserver(CliConsole console, string? metricsPath = null, string method = "", ulong seed = 0) : ITrainingObserver
{
    /// <inheritdoc/>
    public T WithProgress<T>(string title, int total, Func<Action<int, string>, T> body)
    {
        ArgumentNullException.ThrowIfNull(body);
        return console.WithProgress(title, total, handle => body(handle.Report));
    }

    /// <inheritdoc/>
    public void EpochDone(string label, int epochs, MethodEpoch epoch)
    {
        ArgumentNullException.ThrowIfNull(epoch);
        console.Out.WriteLine(MethodTrainer.EpochLine(label, epochs, epoch));
        if (metricsPath is null) return;
        string? dir = Path.GetDirectoryName(Path.GetFullPath(metricsPath));
        if (dir is not null) Directory.CreateDirectory(dir);
        var record = new Dictionary<string, object>
        {
            ["model"] = "student", ["method"] = method, ["seed"] = seed, ["epoch"] = epoch.Epoch, ["train_loss"] = epoch.TrainLoss,
            ["train_acc"] = epoch.TrainAccuracy, ["test_acc"] = epoch.TestAccuracy, ["seconds"] = epoch.Seconds,
            ["images_per_s"] = epoch.ImagesPerSecond, ["lr"] = epoch.LearningRate,
        };
        File.AppendAllText(metricsPath, JsonSerializer.Serialize(record) + "\n");
    }
}
