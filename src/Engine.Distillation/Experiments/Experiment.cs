using Engine.Distillation.Methods;
using Engine.Tensors.NN;

namespace Engine.Distillation.Experiments;

/// <summary>The budget and data of an experiment (<c>engine experiment NAME</c> options).</summary>
public sealed record ExperimentSettings
{
    /// <summary>Epochs of every student run (the same budget for every method).</summary>
    public int Epochs { get; init; } = 10;

    /// <summary>Epochs of the teacher, when the experiment trains one.</summary>
    public int TeacherEpochs { get; init; } = 15;

    /// <summary>Every run is repeated for seeds 0 .. Seeds − 1.</summary>
    public int Seeds { get; init; } = 3;

    /// <summary>First N training images only (quick runs); null: all.</summary>
    public int? Limit { get; init; }

    /// <summary>First N test images only; null: all.</summary>
    public int? TestLimit { get; init; }

    /// <summary>The optimization settings of every run (the seed is set per run).</summary>
    public MethodTrainSettings Training { get; init; } = new();

    /// <summary>Directory of the Fashion-MNIST IDX files; null: the default.</summary>
    public string? DataDirectory { get; init; }

    /// <summary>Only these methods (registry names), in the experiment's order; null: the experiment's list.</summary>
    public IReadOnlyList<string>? Methods { get; init; }

    /// <summary>A trained teacher to use instead of training one (owned by the caller).</summary>
    public Module? Teacher { get; init; }

    /// <summary>
    /// Further trained teachers (other checkpoints, owned by the caller) besides <see cref="Teacher"/>, for the
    /// methods that average several (multi-teacher); empty by default.
    /// </summary>
    public IReadOnlyList<Module> AdditionalTeachers { get; init; } = [];

    /// <summary>Where a teacher trained by the experiment is offered for saving (called once, with the model); null: not saved.</summary>
    public Action<Module>? SaveTeacher { get; init; }
}

/// <summary>An experiment: a list of trainings with one budget, summarized in an <see cref="ExperimentReport"/>.</summary>
public interface IExperiment
{
    /// <summary>The name <c>engine experiment</c> takes.</summary>
    string Name { get; }

    /// <summary>One line.</summary>
    string Description { get; }

    /// <summary>Runs everything, reporting progress to <paramref name="observer"/> and one line per finished run to <paramref name="log"/>.</summary>
    ExperimentReport Run(ExperimentSettings settings, ITrainingObserver observer, TextWriter log);
}

/// <summary>The experiments by name.</summary>
public static class ExperimentRegistry
{
    private static readonly List<IExperiment> _experiments = [new FmnistMethodsExperiment(), new DefensiveExperiment()];

    /// <summary>Every experiment.</summary>
    public static IReadOnlyList<IExperiment> All => _experiments;

    /// <summary>The names, comma-separated.</summary>
    public static string Names => string.Join(", ", _experiments.Select(e => e.Name));

    /// <summary>The experiment named <paramref name="name"/>, or null.</summary>
    public static IExperiment? Find(string name) => _experiments.FirstOrDefault(e => string.Equals(e.Name, name, StringComparison.OrdinalIgnoreCase));

    /// <summary>Adds an experiment (name must be new).</summary>
    public static void Register(IExperiment experiment)
    {
        ArgumentNullException.ThrowIfNull(experiment);
        lock (_experiments)
        {
            if (Find(experiment.Name) is not null) throw new ArgumentException($"ExperimentRegistry: '{experiment.Name}' is already registered.");
            _experiments.Add(experiment);
        }
    }
}
