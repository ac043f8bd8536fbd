namespace Engine.Benchmarks;

/// <summary>
/// One benchmark: a fixed shape and fixed math, the same as the case of the same name in
/// <c>../shared/peers/torch_bench.py</c>. A case is found by reflection (any non-abstract subclass with a
/// parameterless constructor in this assembly), so adding a case is adding one file under <c>Cases/</c>.
/// </summary>
/// <remarks>
/// Contract: <see cref="Prepare"/> allocates the inputs, runs the work once and checks the result against
/// a reference (throwing <see cref="BenchValidationException"/> on a mismatch) before it returns the step
/// to time. The runner then warms up, times <see cref="BenchOptions.Runs"/> steps and reports the median.
/// A step must leave no garbage the next step depends on (dispose its outputs, clear gradients).
/// </remarks>
public abstract class BenchCase
{
    /// <summary>The case's name, as in torch_bench.py (e.g. <c>kd-loss</c>).</summary>
    public abstract string Name { get; }

    /// <summary>One line: what is computed, at which shape.</summary>
    public abstract string Description { get; }

    /// <summary>Which issue's target this case measures, and the target (shown by <c>engine bench --list</c>).</summary>
    public virtual string Target => "";

    /// <summary>
    /// True when the case runs on an accelerator (<c>--device emulator|opencl|cuda</c>): its <see cref="Prepare"/>
    /// puts the inputs on <see cref="BenchOptions.Device"/> (<see cref="BenchDevice.Place"/>) and validates the device's
    /// result against the CPU reference. False (the default): the runner refuses any device but the CPU.
    /// </summary>
    public virtual bool RunsOnDevices => false;

    /// <summary>Allocates inputs, validates one run against a reference, and returns the step to time.</summary>
    public abstract BenchRun Prepare(BenchOptions options);
}

/// <summary>The prepared work of a case: the timed step, what it moves/computes, and what to dispose after.</summary>
public sealed class BenchRun : IDisposable
{
    private readonly List<IDisposable> _owned = [];

    /// <summary>Creates a run that times <paramref name="step"/>.</summary>
    public BenchRun(IReadOnlyList<long> shape, Action step)
    {
        Shape = shape;
        Step = step;
    }

    /// <summary>The shape reported in the JSON (the same list as torch_bench.py's <c>shape</c>).</summary>
    public IReadOnlyList<long> Shape { get; }

    /// <summary>The work timed once per run.</summary>
    public Action Step { get; }

    /// <summary>Floating-point operations of one step, if the case reports GFLOP/s.</summary>
    public double? Flops { get; init; }

    /// <summary>The bytes one step must read and write at least (the memory floor), if the case reports GB/s.</summary>
    public double? Bytes { get; init; }

    /// <summary>Untimed steps before timing (at least; the runner also warms up for at least one second). Default 3; long steps (a whole epoch) use 1.</summary>
    public int WarmupSteps { get; init; } = 3;

    /// <summary>Extra fields copied into the JSON object (temperature, beta, validation error, ...).</summary>
    public Dictionary<string, object> Extra { get; } = [];

    /// <summary>Registers something to dispose with the run (inputs, modules).</summary>
    public T Own<T>(T disposable) where T : IDisposable
    {
        _owned.Add(disposable);
        return disposable;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        for (int i = _owned.Count - 1; i >= 0; i--) _owned[i].Dispose();
        _owned.Clear();
    }
}

/// <summary>How a case runs.</summary>
/// <param name="Threads">CPU threads (<c>Parallelism.MaxThreads</c>).</param>
/// <param name="Runs">Timed runs; the median is reported.</param>
/// <param name="Quick">Small shapes for smoke tests: validates and times, but the numbers are not comparable with the peer's.</param>
/// <param name="Device">Device name (<c>cpu</c>, <c>opencl[:N]</c>, <c>cuda[:N]</c>, <c>emulator</c>) for cases that support one (<see cref="BenchCase.RunsOnDevices"/>).</param>
public sealed record BenchOptions(int Threads, int Runs, bool Quick = false, string Device = "cpu")
{
    /// <summary>The opened <see cref="Device"/> (see <see cref="BenchDevice.Open"/>).</summary>
    /// <exception cref="BenchDeviceException">Not a device name, or not available here.</exception>
    public BenchDevice Target => BenchDevice.Open(Device);

    /// <summary>
    /// <see cref="Quick"/> on the emulator: tiny shapes, smaller than the quick ones (the emulator runs every GPU
    /// thread of every launch as a C# thread, ~10^4 times slower than the CPU ops), so a smoke test stays in seconds.
    /// </summary>
    public bool Tiny => Quick && Target.Device.Type == Engine.Runtime.DeviceType.Emulator;
}

/// <summary>A case's result did not match its reference; nothing was timed.</summary>
public sealed class BenchValidationException(string message) : Exception(message);
