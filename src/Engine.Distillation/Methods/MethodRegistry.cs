using System.Globalization;
using Engine.Tensors;
using Engine.Tensors.NN;

namespace Engine.Distillation.Methods;

/// <summary>
/// Hyperparameters a method may take by name; a null leaves the method's default (written in each
/// method's documentation).
/// </summary>
public sealed record MethodOptions
{
    /// <summary>Softmax temperature (kd, ban, defensive).</summary>
    public double? Temperature { get; init; }

    /// <summary>Weight of the distillation term against the labels (kd, ban, bdkd), α_T (pskd), or the TCKD weight α (dkd).</summary>
    public double? Alpha { get; init; }

    /// <summary>The NCKD weight β (dkd, default 8) or the inter-class weight β (dist, default 1).</summary>
    public double? Beta { get; init; }

    /// <summary>Weight of the feature term (fitnets 100, at 1000).</summary>
    public double? FeatureWeight { get; init; }

    /// <summary>Number of peers (dml, default 2).</summary>
    public int? Peers { get; init; }

    /// <summary>The options as "name=value" pairs (for logs and checkpoint metadata); unset ones omitted.</summary>
    public IReadOnlyDictionary<string, string> ToDictionary()
    {
        var d = new Dictionary<string, string>();
        if (Temperature is double t) d["temperature"] = t.ToString("R", CultureInfo.InvariantCulture);
        if (Alpha is double a) d["alpha"] = a.ToString("R", CultureInfo.InvariantCulture);
        if (Beta is double b) d["beta"] = b.ToString("R", CultureInfo.InvariantCulture);
        if (FeatureWeight is double w) d["feature_weight"] = w.ToString("R", CultureInfo.InvariantCulture);
        if (Peers is int p) d["peers"] = p.ToString(CultureInfo.InvariantCulture);
        return d;
    }

    /// <summary>
    /// Parses a method with options, <c>NAME[:key=value]...</c> (keys: temperature, alpha, beta, feature_weight,
    /// peers), e.g. <c>dkd:beta=1</c> or <c>kd:temperature=2:alpha=0.5</c>, as <c>engine experiment --methods</c> takes it.
    /// </summary>
    /// <exception cref="ArgumentException">An unknown method or key, a key given twice, or a value that is not a finite number.</exception>
    public static (string Name, MethodOptions Options) ParseSpec(string spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        var parts = spec.Split(':', StringSplitOptions.TrimEntries);
        string name = parts[0];
        if (MethodRegistry.Find(name) is null) throw new ArgumentException($"method '{spec}': unknown method '{name}'; available: {MethodRegistry.Names}.");
        var o = new MethodOptions();
        var seen = new HashSet<string>();
        foreach (var kv in parts.Skip(1))
        {
            int eq = kv.IndexOf('=');
            string key = eq < 0 ? kv : kv[..eq].Trim().ToLowerInvariant(), text = eq < 0 ? "" : kv[(eq + 1)..].Trim();
            if (eq < 0) throw new ArgumentException($"method '{spec}': option '{kv}' is not key=value.");
            if (!seen.Add(key)) throw new ArgumentException($"method '{spec}': option '{key}' given twice.");
            if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double x) || !double.IsFinite(x))
                throw new ArgumentException($"method '{spec}': option {key} = '{text}' is not a finite number.");
            o = key switch
            {
                "temperature" => o with { Temperature = x },
                "alpha" => o with { Alpha = x },
                "beta" => o with { Beta = x },
                "feature_weight" => o with { FeatureWeight = x },
                "peers" when x == Math.Floor(x) && x >= 1 && x <= 64 => o with { Peers = (int)x },
                "peers" => throw new ArgumentException($"method '{spec}': peers = {text}: expected a whole number in [1, 64]."),
                _ => throw new ArgumentException($"method '{spec}': unknown option '{key}'; expected temperature, alpha, beta, feature_weight or peers."),
            };
        }
        return (MethodRegistry.Find(name)!.Name, o);
    }
}

/// <summary>What a method is built from.</summary>
/// <param name="Student">The model to train (owned by the caller).</param>
/// <param name="Teacher">The frozen teacher (owned by the caller); null for methods without one.</param>
/// <param name="NewModel">Builds a fresh model of the student's architecture from a seed (DML's extra peers).</param>
/// <param name="SampleShape">One input's shape without the batch dimension (e.g. [1, 28, 28]), for probing feature shapes.</param>
/// <param name="Seed">Seeds whatever the method creates (regressors, peers).</param>
/// <param name="Options">Hyperparameters.</param>
public sealed record MethodContext(Module Student, Module? Teacher, Func<ulong, Module> NewModel, long[] SampleShape, ulong Seed, MethodOptions Options)
{
    /// <summary>
    /// Further frozen teachers (other checkpoints, owned by the caller) after <see cref="Teacher"/>, for
    /// methods that learn from several (multi-teacher); empty by default.
    /// </summary>
    public IReadOnlyList<Module> AdditionalTeachers { get; init; } = [];

    /// <summary><see cref="Teacher"/> (when set) followed by <see cref="AdditionalTeachers"/>.</summary>
    public IReadOnlyList<Module> AllTeachers => Teacher is null ? AdditionalTeachers : [Teacher, .. AdditionalTeachers];
}

/// <summary>One registered method.</summary>
/// <param name="Name">The name <c>engine distill --method</c> takes.</param>
/// <param name="Description">One line.</param>
/// <param name="Teacher">Whether it needs a teacher, and of which kind.</param>
/// <param name="Create">Builds the method.</param>
public sealed record MethodInfo(string Name, string Description, TeacherRequirement Teacher, Func<MethodContext, IDistillationMethod> Create);

/// <summary>What a method needs as a teacher.</summary>
public enum TeacherRequirement
{
    /// <summary>No teacher (scratch, online and self-distillation).</summary>
    None,
    /// <summary>A bigger, trained teacher.</summary>
    Required,
    /// <summary>A model of the student's own architecture (born-again networks: the previous generation).</summary>
    SameArchitecture,
}

/// <summary>The distillation methods by name (<c>engine distill --method NAME</c>, <c>engine experiment</c>).</summary>
public static class MethodRegistry
{
    private static readonly List<MethodInfo> _methods =
    [
        new("kd", "Hinton KD: (1-a)*CE + a*T^2*KL(teacher || student), T = 4, a = 0.9", TeacherRequirement.Required,
            c => new KnowledgeDistillationMethod(c.Student, Need(c, "kd"), c.Options.Temperature ?? 4, c.Options.Alpha ?? 0.9)),
        new("fitnets", "FitNets: CE + 100*MSE(1x1-conv regressor(student block1), teacher block2)", TeacherRequirement.Required,
            c => new FitNetsMethod(c.Student, Need(c, "fitnets"), c.SampleShape, weight: c.Options.FeatureWeight ?? 100, generator: new Generator(c.Seed + 1000))),
        new("at", "attention transfer: CE + 1000*sum over stages of mean((a_s - a_t)^2), p = 2", TeacherRequirement.Required,
            c => new AttentionTransferMethod(c.Student, Need(c, "at"), weight: c.Options.FeatureWeight ?? 1000)),
        new("rkd", "relational KD: CE + 25*distance + 50*angle (smooth-L1) on the embeddings", TeacherRequirement.Required,
            c => new RelationalKDMethod(c.Student, Need(c, "rkd"))),
        new("dml", "deep mutual learning: peers with CE + KL(peer || self), updated alternately", TeacherRequirement.None,
            c => new DeepMutualLearningMethod(c.Student, k => c.NewModel(c.Seed + 7919UL * (ulong)k), c.Options.Peers ?? 2)),
        new("pskd", "progressive self-KD: targets (1-a_t)*onehot + a_t*last epoch's predictions, a_t linear to 0.8", TeacherRequirement.None,
            c => new ProgressiveSelfKDMethod(c.Student, c.Options.Alpha ?? 0.8)),
        new("ban", "born-again network: one generation distilled from the previous one (same architecture), T = 1, a = 1", TeacherRequirement.SameArchitecture,
            c => new BornAgainMethod(c.Student, Need(c, "ban"), c.Options.Temperature ?? 1, c.Options.Alpha ?? 1)),
        new("defensive", "defensive distillation: CE on the teacher's soft labels at T = 20 (teacher trained at the same T)", TeacherRequirement.Required,
            c => new DefensiveDistillationMethod(c.Student, Need(c, "defensive"), c.Options.Temperature ?? 20)),
        new("scratch", "cross-entropy on the labels only (the baseline)", TeacherRequirement.None,
            c => new CrossEntropyMethod(c.Student, c.Options.Temperature ?? 1)),
        new("dkd", "decoupled KD (mdistiller): CE + warmup*(1*TCKD + 8*NCKD), T = 4, warm-up the first 1/12 of the run", TeacherRequirement.Required,
            c => new DkdMethod(c.Student, Need(c, "dkd"), alpha: c.Options.Alpha ?? 1, beta: c.Options.Beta ?? 8, temperature: c.Options.Temperature ?? 4)),
        new("dist", "DIST (torchdistill): CE + inter + intra Pearson-correlation terms, beta = gamma = tau = 1", TeacherRequirement.Required,
            c => new DistMethod(c.Student, Need(c, "dist"), beta: c.Options.Beta ?? 1, temperature: c.Options.Temperature ?? 1)),
        new("taid", "TAID: CE to softmax((1-u)*stopgrad(s) + u*t), u adaptive from 0.4 to 1 (updated every step), no labels", TeacherRequirement.Required,
            c => new TaidMethod(c.Student, Need(c, "taid"))),
        new("multi-teacher", "MEAL V2 style: KL(mean of >= 2 teachers' probabilities || student), no labels, T = 1", TeacherRequirement.Required,
            c => new MultiTeacherMethod(c.Student, c.AllTeachers, c.Options.Temperature ?? 1)),
        new("pld", "Plackett-Luce distillation: CE + list-wise loss (true class first, then by teacher confidence), T = 1", TeacherRequirement.Required,
            c => new PldMethod(c.Student, Need(c, "pld"), c.Options.Temperature ?? 1)),
        new("bdkd", "BD-KD: (1-a)*CE + a*T^2*[w*KL(t||s) + (1-w)*KL(s||t)], w = H_t/(H_t+H_s) per sample, T = 4, a = 0.9", TeacherRequirement.Required,
            c => new BdKdMethod(c.Student, Need(c, "bdkd"), c.Options.Temperature ?? 4, c.Options.Alpha ?? 0.9)),
    ];

    /// <summary>Every registered method, in registration order.</summary>
    public static IReadOnlyList<MethodInfo> All => _methods;

    /// <summary>The registered names, comma-separated (for messages).</summary>
    public static string Names => string.Join(", ", _methods.Select(m => m.Name));

    /// <summary>Adds a method (e.g. DKD, DIST, TAID when their losses land); the name must be new.</summary>
    public static void Register(MethodInfo info)
    {
        ArgumentNullException.ThrowIfNull(info);
        lock (_methods)
        {
            if (_methods.Any(m => m.Name == info.Name)) throw new ArgumentException($"MethodRegistry: '{info.Name}' is already registered.");
            _methods.Add(info);
        }
    }

    /// <summary>The method named <paramref name="name"/>, or null.</summary>
    public static MethodInfo? Find(string name) => _methods.FirstOrDefault(m => string.Equals(m.Name, name, StringComparison.OrdinalIgnoreCase));

    /// <summary>Builds method <paramref name="name"/> from <paramref name="context"/>.</summary>
    /// <exception cref="ArgumentException">Unknown name (the message lists the registered ones), or a teacher missing.</exception>
    public static IDistillationMethod Create(string name, MethodContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var info = Find(name) ?? throw new ArgumentException($"unknown distillation method '{name}'; available: {Names}.");
        return info.Create(context);
    }

    private static Module Need(MethodContext c, string name)
        => c.Teacher ?? throw new ArgumentException($"{name}: this method needs a teacher.");
}
