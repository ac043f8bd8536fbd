namespace Engine.Tensors.AutoDiff;

/// <summary>
/// Whether ops record the autograd graph on the current thread. Recording is on by default;
/// <see cref="Tensor.NoGrad"/> turns it off for a scope.
/// </summary>
public static class GradMode
{
    [ThreadStatic] private static bool t_disabled;

    /// <summary>True when ops on this thread record the graph.</summary>
    public static bool IsEnabled => !t_disabled;

    /// <summary>True when an in-place change of <paramref name="t"/> would be seen by the graph.</summary>
    internal static bool IsEnabledFor(Tensor t) => IsEnabled && t.RequiresGrad;

    /// <summary>Sets recording on or off until the returned scope is disposed.</summary>
    public static GradModeScope Set(bool enabled)
    {
        var scope = new GradModeScope(!t_disabled);
        t_disabled = !enabled;
        return scope;
    }

    /// <summary>Restores the previous grad mode when disposed.</summary>
    public readonly struct GradModeScope : IDisposable
    {
        private readonly bool _previous;

        internal GradModeScope(bool previous) => _previous = previous;

        /// <summary>Restores the grad mode that was in force before.</summary>
        public void Dispose() => t_disabled = !_previous;
    }
}
