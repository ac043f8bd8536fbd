using System.Globalization;
using Engine.Tensors;
using Engine.Tensors.NN;
using Engine.Tensors.NN.Models;
using Engine.Tensors.Serialization;

namespace Engine.Cli.Training;

/// <summary>
/// Checkpoints of the Fashion-MNIST models: a safetensors file holding the model's state dict
/// (<see cref="Module.StateDict"/> names, e.g. "f.0.weight", "f.1.running_mean", as PyTorch's
/// <c>state_dict()</c>) and string metadata: <c>format</c> = "engine.fmnist", <c>model</c> =
/// teacher|student, <c>epoch</c>, <c>test_accuracy</c>, <c>seed</c>, <c>method</c> and the training
/// settings. A file without metadata (e.g. saved from PyTorch with safetensors) also loads: the model
/// kind is then inferred from the tensor names.
/// </summary>
public static class Checkpoint
{
    /// <summary>The <c>format</c> metadata value.</summary>
    public const string Format = "engine.fmnist";

    /// <summary>Writes <paramref name="model"/>'s state dict and <paramref name="metadata"/> (plus format and model kind) atomically.</summary>
    public static void Save(string path, FashionMnistNet model, ModelKind kind, IReadOnlyDictionary<string, string> metadata)
    {
        var meta = new Dictionary<string, string>(metadata) { ["format"] = Format, ["model"] = KindName(kind) };
        string? dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (dir is not null) Directory.CreateDirectory(dir);
        SafeTensors.Save(path, model.StateDict(), meta);
    }

    /// <summary>
    /// Rebuilds the model stored at <paramref name="path"/> (its kind from the metadata, or from the
    /// tensor names, or <paramref name="kindOverride"/>) in eval mode.
    /// </summary>
    /// <exception cref="CliException">The file is missing, is not a valid safetensors file, or does not hold a
    /// Fashion-MNIST teacher or student (the message names the file and the problem).</exception>
    public static (FashionMnistNet Model, ModelKind Kind, Dictionary<string, string> Metadata) Load(string path, ModelKind? kindOverride = null)
    {
        if (!File.Exists(path)) throw new CliException($"checkpoint not found: {path}");
        Dictionary<string, Tensor> tensors;
        Dictionary<string, string> metadata;
        try
        {
            tensors = SafeTensors.Load(path, out metadata);
        }
        catch (Exception e) when (e is InvalidDataException or NotSupportedException or IOException or UnauthorizedAccessException)
        {
            throw new CliException($"cannot read checkpoint {path}: {e.Message}", e);
        }
        try
        {
            var kind = kindOverride ?? KindOf(path, tensors, metadata);
            var model = kind == ModelKind.Teacher ? FashionMnistModels.Teacher(new Generator(0)) : FashionMnistModels.Student(new Generator(0));
            try
            {
                model.LoadStateDict(tensors);
            }
            catch (StateDictException e)
            {
                model.Dispose();
                throw new CliException($"checkpoint {path} does not fit the {KindName(kind)} model: {e.Message}", e);
            }
            model.Eval();
            return (model, kind, metadata);
        }
        finally
        {
            foreach (var t in tensors.Values) t.Dispose();
        }
    }

    /// <summary>"teacher" or "student".</summary>
    public static string KindName(ModelKind kind) => kind == ModelKind.Teacher ? "teacher" : "student";

    /// <summary>Parses "teacher" or "student" (case-insensitive).</summary>
    public static ModelKind? ParseKind(string? name) => name?.ToLowerInvariant() switch
    {
        "teacher" => ModelKind.Teacher,
        "student" => ModelKind.Student,
        _ => null,
    };

    /// <summary>A double in metadata form (round-trip, invariant culture).</summary>
    public static string Number(double value) => value.ToString("R", CultureInfo.InvariantCulture);

    private static ModelKind KindOf(string path, Dictionary<string, Tensor> tensors, Dictionary<string, string> metadata)
    {
        if (metadata.TryGetValue("model", out var name))
            return ParseKind(name) ?? throw new CliException($"checkpoint {path}: metadata model = '{name}'; expected teacher or student.");
        if (tensors.ContainsKey("f.1.running_mean")) return ModelKind.Teacher;
        if (tensors.ContainsKey("f.0.weight")) return ModelKind.Student;
        throw new CliException($"checkpoint {path} holds neither the Fashion-MNIST teacher nor the student (no 'model' metadata; tensors: {string.Join(", ", tensors.Keys.Take(8))}{(tensors.Count > 8 ? ", ..." : "")}).");
    }
}
