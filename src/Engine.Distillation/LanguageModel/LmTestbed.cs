using System.Diagnostics;
using System.Globalization;
using Engine.Tensors;
using Engine.Tensors.NN;
using Engine.Tensors.Optim;

namespace Engine.Distillation.LanguageModel;

/// <summary>
/// The language-model distillation testbed with a known ground truth (the setup of "teacher hacking"
/// studies, Tiapkin et al. 2025):
/// <list type="number">
/// <item>an oracle (<see cref="SyntheticOracle"/>): a fixed random transformer whose tempered samples are the data;</item>
/// <item>a teacher trained by cross-entropy on a fixed oracle sample (AdamW, warmup + cosine, gradient clipping);</item>
/// <item>for each seed, method and regime, a smaller student trained from the teacher's logits
/// (<see cref="LmDistillationLoss"/>; <see cref="LmMethod.CrossEntropy"/> uses the data instead) on
/// offline (a fixed set) or online (fresh each step) oracle sequences;</item>
/// <item>each model's exact divergence to the oracle (<see cref="LmMetrics"/>) on held-out oracle sequences,
/// during and after training, with the student's divergence to the teacher (the proxy the losses optimize).</item>
/// </list>
/// Seeds, from <see cref="LmTestbedSettings.Seed"/> = b: oracle parameters b; teacher parameters b+1, teacher data
/// b+2, teacher batch order b+3; held-out sequences b+4; for student seed k: parameters b+100+k, offline set
/// b+200+k, batches and online samples b+300+k. Every method of one seed starts from the same student
/// parameters and sees the same batches (a paired comparison).
/// </summary>
public static class LmTestbed
{
    /// <summary>Runs the whole experiment; <paramref name="progress"/> receives one line per stage (may be null).</summary>
    public static LmTestbedResult Run(LmTestbedSettings settings, Action<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(settings);
        settings.Validate();
        var total = Stopwatch.StartNew();
        ulong b = settings.Seed;
        using var oracle = SyntheticOracle.Create(settings.Oracle, b, settings.OracleEntropyFraction);
        using var evalSequences = oracle.Sample(settings.EvalSequences, new Generator(b + 4));
        var oracleLogP = oracle.LogProbabilities(evalSequences);
        int v = oracle.VocabSize;
        double oracleEntropy = oracle.MeanEntropy(evalSequences);
        double uniformKl = Math.Log(v) - oracleEntropy;
        progress?.Invoke(string.Create(CultureInfo.InvariantCulture,
            $"oracle {settings.Oracle.Describe()}: τ = {oracle.Temperature:G4}, mean entropy {oracleEntropy:F3} nats (ln V = {Math.Log(v):F3}), KL(oracle‖uniform) = {uniformKl:F4}"));

        var teacherClock = Stopwatch.StartNew();
        using var teacher = TrainTeacher(oracle, settings, progress);
        double teacherSeconds = teacherClock.Elapsed.TotalSeconds;
        var teacherLogQ = LmMetrics.LogProbabilities(teacher, evalSequences, oracle.SequenceLength);
        double teacherKl = LmMetrics.MeanKl(oracleLogP, teacherLogQ, v);
        progress?.Invoke(string.Create(CultureInfo.InvariantCulture, $"teacher {settings.Teacher.Describe()}: KL(oracle‖teacher) = {teacherKl:F4} after {settings.TeacherSteps} steps ({teacherSeconds:F1} s)"));

        var eval = new EvalSet(evalSequences, oracleLogP, teacherLogQ, v, oracle.SequenceLength);
        var runs = new List<LmRunResult>();
        for (int k = 0; k < settings.Seeds; k++)
        {
            using var offline = settings.Regimes.Contains(LmRegime.Offline) ? oracle.Sample(settings.OfflineSequences, new Generator(b + 200 + (ulong)k)) : null;
            foreach (var regime in settings.Regimes)
                foreach (var method in settings.Methods)
                {
                    var r = TrainStudent(oracle, teacher, method, regime, k, settings, eval, offline, progress);
                    runs.Add(r);
                    progress?.Invoke(string.Create(CultureInfo.InvariantCulture,
                        $"seed {k} {Name(regime),-7} {LmDistillationLoss.Name(method),-10}: KL(oracle‖student) {r.Curve[0].KlToOracle:F4} → {r.KlToOracle:F4}, KL(teacher‖student) {r.KlToTeacher:F4}, {r.Seconds:F1} s"));
                }
        }
        return new LmTestbedResult(settings, oracle.Temperature, oracleEntropy, uniformKl, teacherKl, teacherSeconds, runs, total.Elapsed.TotalSeconds);
    }

    /// <summary>
    /// Trains a teacher (<see cref="LmTestbedSettings.Teacher"/>, seed b+1) by cross-entropy on
    /// <see cref="LmTestbedSettings.TeacherSequences"/> oracle samples for <see cref="LmTestbedSettings.TeacherSteps"/> steps.
    /// The returned model is frozen (no gradient) and in eval mode.
    /// </summary>
    public static DecoderTransformer TrainTeacher(SyntheticOracle oracle, LmTestbedSettings settings, Action<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(oracle);
        ArgumentNullException.ThrowIfNull(settings);
        ulong b = settings.Seed;
        var teacher = new DecoderTransformer(settings.Teacher, b + 1);
        try
        {
            using var data = oracle.Sample(settings.TeacherSequences, new Generator(b + 2));
            var order = new Generator(b + 3);
            var loss = new LmDistillationLoss(LmMethod.CrossEntropy, settings.Loss, settings.TeacherSteps);
            int reportEvery = Math.Max(1, settings.TeacherSteps / 5);
            Optimize(teacher, settings.TeacherSteps, settings.TeacherLearningRate, settings,
                step => SampleRows(data, settings.BatchSize, order), null, loss,
                (step, value) =>
                {
                    if ((step + 1) % reportEvery == 0 || step + 1 == settings.TeacherSteps)
                        progress?.Invoke(string.Create(CultureInfo.InvariantCulture, $"teacher step {step + 1}/{settings.TeacherSteps}: cross-entropy {value:F4}"));
                });
            teacher.Eval();
            teacher.RequiresGrad_(false);
            return teacher;
        }
        catch
        {
            teacher.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Trains one student (seed index <paramref name="seedIndex"/>) with <paramref name="method"/> in
    /// <paramref name="regime"/> and evaluates it at step 0 and <see cref="LmTestbedSettings.EvalPoints"/> later steps
    /// on <paramref name="eval"/>. The time reported covers the training steps (batches, teacher forward, loss,
    /// update), not the evaluations.
    /// </summary>
    /// <param name="oracle">The data source (online regime) and ground truth.</param>
    /// <param name="teacher">The teacher (unused by <see cref="LmMethod.CrossEntropy"/>).</param>
    /// <param name="method">The loss.</param>
    /// <param name="regime">Offline (from <paramref name="offline"/>) or online (fresh oracle samples).</param>
    /// <param name="seedIndex">k: parameters b+100+k, batches b+300+k.</param>
    /// <param name="settings">The sizes.</param>
    /// <param name="eval">Held-out sequences with the oracle's and the teacher's log-probabilities.</param>
    /// <param name="offline">The offline set [S, N+1] (required for <see cref="LmRegime.Offline"/>).</param>
    /// <param name="progress">Progress lines (may be null).</param>
    public static LmRunResult TrainStudent(SyntheticOracle oracle, DecoderTransformer teacher, LmMethod method, LmRegime regime, int seedIndex,
        LmTestbedSettings settings, EvalSet eval, Tensor? offline, Action<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(oracle);
        ArgumentNullException.ThrowIfNull(teacher);
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentNullException.ThrowIfNull(eval);
        if (regime == LmRegime.Offline && offline is null)
            throw new ArgumentException("LmTestbed.TrainStudent: the offline regime needs the offline set.");
        ulong b = settings.Seed, k = (ulong)seedIndex;
        using var student = new DecoderTransformer(StudentConfig(settings, method), b + 100 + k);
        var batches = new Generator(b + 300 + k);
        var loss = new LmDistillationLoss(method, settings.Loss, settings.Steps);
        var evalSteps = new SortedSet<long>(Enumerable.Range(1, settings.EvalPoints).Select(i => (long)Math.Round((double)settings.Steps * i / settings.EvalPoints)).Where(s => s > 0));
        var curve = new List<LmCurvePoint> { Evaluate(student, 0, eval) };
        double lastLoss = double.NaN;
        var clock = new Stopwatch();
        Optimize(student, settings.Steps, settings.LearningRate, settings,
            step => regime == LmRegime.Online ? oracle.Sample(settings.BatchSize, batches) : SampleRows(offline!, settings.BatchSize, batches),
            teacher, loss,
            (step, value) =>
            {
                lastLoss = value;
                if (!evalSteps.Contains(step + 1)) return;
                clock.Stop();
                curve.Add(Evaluate(student, step + 1, eval));
                clock.Start();
            }, clock);
        var last = curve[^1];
        return new LmRunResult(method, regime, seedIndex, last.KlToOracle, last.KlToTeacher, lastLoss, clock.Elapsed.TotalSeconds, curve);
    }

    /// <summary>
    /// The student's shape for <paramref name="method"/>: <see cref="LmTestbedSettings.Student"/>, except that
    /// <see cref="LmMethod.MiniLm"/> (which matches attention heads one to one) takes the teacher's number of heads.
    /// The parameters' shapes, and so their count and initial values for a seed, do not depend on the heads.
    /// </summary>
    public static TransformerConfig StudentConfig(LmTestbedSettings settings, LmMethod method)
    {
        ArgumentNullException.ThrowIfNull(settings);
        return method == LmMethod.MiniLm ? settings.Student with { Heads = settings.Teacher.Heads } : settings.Student;
    }

    /// <summary>The regime's name as the tables write it ("offline", "online").</summary>
    public static string Name(LmRegime regime) => regime == LmRegime.Offline ? "offline" : "online";

    private static LmCurvePoint Evaluate(DecoderTransformer model, long step, EvalSet eval)
    {
        var logQ = LmMetrics.LogProbabilities(model, eval.Sequences, eval.ContextLength);
        return new LmCurvePoint(step, LmMetrics.MeanKl(eval.OracleLogProbabilities, logQ, eval.VocabSize), LmMetrics.MeanKl(eval.TeacherLogProbabilities, logQ, eval.VocabSize));
    }

    /// <summary><paramref name="count"/> rows of <paramref name="data"/> drawn uniformly with replacement.</summary>
    private static Tensor SampleRows(Tensor data, int count, Generator generator)
    {
        using var index = Tensor.RandInt(0, data.Size(0), [count], generator);
        return data.IndexSelect(0, index);
    }

    /// <summary>
    /// The shared training loop: AdamW (β = 0.9, 0.999, decoupled weight decay), warmup (5% of the steps, at least 1)
    /// then cosine to 0, gradient-norm clipping; one dispose scope per step. A non-finite loss stops with an
    /// <see cref="InvalidOperationException"/> naming the method and step.
    /// </summary>
    private static void Optimize(DecoderTransformer model, int steps, double learningRate, LmTestbedSettings settings,
        Func<long, Tensor> nextBatch, DecoderTransformer? teacher, LmDistillationLoss loss, Action<long, double> afterStep, Stopwatch? clock = null)
    {
        model.Train();
        var parameters = model.Parameters().ToList();
        using var optimizer = new AdamW(parameters, learningRate, weightDecay: settings.WeightDecay);
        long warmup = Math.Max(1, steps / 20);
        var schedule = LRScheduler.WarmupCosine(optimizer, warmup, steps);
        int n = model.Config.ContextLength;
        clock?.Start();
        for (long step = 0; step < steps; step++)
        {
            double value;
            using (Tensor.NewDisposeScope())
            {
                var batch = nextBatch(step);
                var inputs = LmData.Inputs(batch, n);
                var targets = LmData.Targets(batch);
                Tensor? teacherLogits = null;
                Tensor l;
                if (loss.NeedsAttention)
                {
                    // MiniLM: both models' last-layer attention relations (the teacher's without a graph).
                    AttentionRelations teacherAttention;
                    using (Tensor.NoGrad()) (teacherLogits, teacherAttention) = teacher!.ForwardWithLastAttention(inputs);
                    var (logits, studentAttention) = model.ForwardWithLastAttention(inputs);
                    l = loss.Compute(logits, teacherLogits, targets, studentAttention, teacherAttention);
                    studentAttention.Dispose();
                    teacherAttention.Dispose();
                }
                else
                {
                    if (loss.NeedsTeacher)
                        using (Tensor.NoGrad()) teacherLogits = teacher!.Forward(inputs);
                    var logits = model.Forward(inputs);
                    l = loss.Compute(logits, teacherLogits, targets);
                }
                optimizer.ZeroGrad();
                l.Backward();
                GradClip.ClipGradNorm(parameters, settings.ClipNorm);
                optimizer.Step();
                schedule.Step();
                value = l.ToDouble();
            }
            if (!double.IsFinite(value))
                throw new InvalidOperationException($"LmTestbed: the {LmDistillationLoss.Name(loss.Method)} loss became {value} at step {step + 1}; lower the learning rate (now {learningRate:G3}).");
            loss.AfterStep(value, step + 1);
            afterStep(step, value);
        }
        clock?.Stop();
        optimizer.ZeroGrad();
    }
}

/// <summary>Held-out sequences and the log-probabilities the metrics compare a student's with.</summary>
/// <param name="Sequences">Oracle samples int64 [S, N+1].</param>
/// <param name="OracleLogProbabilities">The oracle's exact log-probabilities [S, N, V].</param>
/// <param name="TeacherLogProbabilities">The teacher's log-probabilities [S, N, V].</param>
/// <param name="VocabSize">V.</param>
/// <param name="ContextLength">N.</param>
public sealed record EvalSet(Tensor Sequences, double[] OracleLogProbabilities, double[] TeacherLogProbabilities, int VocabSize, int ContextLength);

/// <summary>One evaluation of a student during training.</summary>
/// <param name="Step">Optimizer steps taken.</param>
/// <param name="KlToOracle">Mean KL(oracle ‖ student) on the held-out sequences (the golden metric).</param>
/// <param name="KlToTeacher">Mean KL(teacher ‖ student) on the same sequences (the proxy).</param>
public sealed record LmCurvePoint(long Step, double KlToOracle, double KlToTeacher);

/// <summary>One student's run.</summary>
/// <param name="Method">The loss.</param>
/// <param name="Regime">The data regime.</param>
/// <param name="Seed">The seed index k.</param>
/// <param name="KlToOracle">Final mean KL(oracle ‖ student).</param>
/// <param name="KlToTeacher">Final mean KL(teacher ‖ student).</param>
/// <param name="FinalLoss">The training loss of the last step.</param>
/// <param name="Seconds">Training wall time (evaluations excluded).</param>
/// <param name="Curve">Evaluations at step 0 and later steps.</param>
public sealed record LmRunResult(LmMethod Method, LmRegime Regime, int Seed, double KlToOracle, double KlToTeacher, double FinalLoss, double Seconds, IReadOnlyList<LmCurvePoint> Curve);
