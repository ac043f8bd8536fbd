using Engine.Runtime;

namespace Engine.Tensors.Optim;

/// <summary>
/// The flat layout behind the one-launch optimizer step on an accelerator device (kernels/Optim/
/// FusedOptimKernels.cs). The kernel language has no pointers and OpenCL 1.2 has no device addresses, so
/// instead of a table of pointers every float32 parameter of the device lives in ONE flat buffer:
/// <list type="bullet">
/// <item>parameters: each parameter tensor is made a view of the flat parameter buffer (its elements copied
/// there once, <see cref="Tensor.RebindStorage_"/>); modules keep using the same tensor objects;</item>
/// <item>gradients: each parameter's <see cref="Tensor.GradSlot"/> is its slice of a flat gradient buffer,
/// and autograd copies a new gradient into it (instead of into a fresh tensor), so after a backward every
/// <c>.Grad</c> is already in place; a gradient set by hand is copied into its slot by the step;</item>
/// <item>state: one flat buffer per state kind (momentum_buffer; exp_avg, exp_avg_sq, max_exp_avg_sq), the
/// per-parameter state tensors being views of it.</item>
/// </list>
/// All at the same element offsets, multiples of <see cref="Kernels.FusedOptimKernels.FlatAlignment"/>.
/// A parameter qualifies when it is float32, contiguous, non-empty and does not share its memory with
/// another tensor (rebinding would break the sharing); the others are stepped one launch each as before.
/// Caveat (as PyTorch's <c>gradient_as_bucket_view</c>): a gradient tensor kept across the next backward
/// sees that backward's values, since the slot is reused.
/// </summary>
internal sealed class FlatParameters : IDisposable
{
    [ThreadStatic] private static long t_gradCopies;

    private readonly Dictionary<string, Tensor> _state = [];
    private readonly Dictionary<int, Slot> _slots = [];
    private Tensor? _pendingTable, _pendingScalars;

    /// <summary>One parameter's place: its index in <see cref="Optimizer.Parameters"/>, offset and length.</summary>
    internal readonly record struct Slot(int Index, Tensor Parameter, long Offset, long Length);

    private FlatParameters(Device device, Tensor parameters, Tensor grads, long total)
    {
        Device = device;
        Parameters = parameters;
        Grads = grads;
        Total = total;
    }

    /// <summary>Gradient copies into slots made by <see cref="Gather"/> on this thread (gradients not written by autograd).</summary>
    internal static long GradCopiesOnThisThread => t_gradCopies;

    /// <summary>The device.</summary>
    public Device Device { get; }

    /// <summary>The flat parameter buffer [Total].</summary>
    public Tensor Parameters { get; }

    /// <summary>The flat gradient buffer [Total].</summary>
    public Tensor Grads { get; }

    /// <summary>Elements of every flat buffer (offsets aligned).</summary>
    public long Total { get; }

    /// <summary>Whether <paramref name="p"/> can join a flat layout.</summary>
    public static bool Qualifies(Tensor p)
        => Kernels.KernelDispatch.IsAccelerated(p) && p.DType == DType.Float32 && p.IsContiguous && p.NumEl > 0 && !p.Storage.IsShared;

    /// <summary>The slot of parameter <paramref name="index"/>, if it is in this layout.</summary>
    public bool TryGetSlot(int index, out Slot slot) => _slots.TryGetValue(index, out slot);

    /// <summary>
    /// Lays out the qualifying parameters among <paramref name="parameters"/> (index, tensor) on
    /// <paramref name="device"/>: copies them into a new flat buffer and rebinds them there, gives each a
    /// gradient slot (copying a gradient it already has). Null when none qualifies.
    /// </summary>
    public static FlatParameters? Build(Device device, IEnumerable<(int Index, Tensor Parameter)> parameters)
    {
        var chosen = new List<(int Index, Tensor Parameter, long Offset)>();
        long total = 0;
        const int align = Kernels.FusedOptimKernels.FlatAlignment;
        foreach (var (index, p) in parameters)
        {
            if (p.Device != device || !Qualifies(p)) continue;
            chosen.Add((index, p, total));
            total += (p.NumEl + align - 1) / align * align;
        }
        if (chosen.Count == 0) return null;
        if (total > int.MaxValue)
            throw new NotSupportedException($"optimizer: the {chosen.Count} float32 parameters on {device} need {total} elements of flat buffer, more than the fused kernel's 32-bit indexing ({int.MaxValue}).");
        using var _ = Tensor.NoGrad();
        var flatParams = Tensor.Zeros([total], DType.Float32, device).DetachFromDisposeScope();
        var flatGrads = Tensor.Zeros([total], DType.Float32, device).DetachFromDisposeScope();
        var layout = new FlatParameters(device, flatParams, flatGrads, total);
        foreach (var (index, p, offset) in chosen)
        {
            using (var target = layout.View(flatParams, offset, p)) target.CopyFrom_(p);
            p.RebindStorage_(flatParams.Storage, offset);
            var slot = layout.View(flatGrads, offset, p).DetachFromDisposeScope();
            if (p.Grad is { } g)
            {
                slot.CopyFrom_(g);
                p.Grad = slot.Alias();
            }
            p.GradSlot?.Dispose();
            p.GradSlot = slot;
            layout._slots[index] = new Slot(index, p, offset, p.NumEl);
        }
        return layout;
    }

    /// <summary>
    /// Makes sure parameter <paramref name="slot"/>'s gradient is in its slot of <see cref="Grads"/>: nothing to
    /// do when autograd put it there, else one copy (counted in <see cref="GradCopiesOnThisThread"/>).
    /// </summary>
    public void Gather(Slot slot, Tensor grad)
    {
        if (grad.Storage == Grads.Storage && grad.Offset == slot.Offset) return;
        var target = slot.Parameter.GradSlot ?? throw new InvalidOperationException("optimizer: a flat parameter lost its gradient slot.");
        target.CopyFrom_(grad);
        t_gradCopies++;
    }

    /// <summary>
    /// The state tensor <paramref name="name"/> of <paramref name="slot"/>'s parameter as a view of the flat
    /// buffer of that name, registered in <paramref name="state"/>. <paramref name="created"/>: the parameter
    /// had no such state (the view is zeros: flat state starts zeroed and only stepped entries are written).
    /// A state tensor the parameter already has elsewhere (loaded by LoadStateDict) is copied in.
    /// </summary>
    public Tensor State(string name, Slot slot, ParameterState state, out bool created)
    {
        if (!_state.TryGetValue(name, out var flat))
            _state[name] = flat = Tensor.Zeros([Total], DType.Float32, Device).DetachFromDisposeScope();
        created = !state.Buffers.TryGetValue(name, out var existing);
        if (!created && existing!.Storage == flat.Storage) return existing;
        var view = View(flat, slot.Offset, slot.Parameter).DetachFromDisposeScope();
        if (!created)
        {
            view.CopyFrom_(existing!);
            existing!.Dispose();
        }
        state.Buffers[name] = view;
        return view;
    }

    /// <summary>The flat state buffer <paramref name="name"/>, or null when no parameter has that state yet.</summary>
    public Tensor? FlatState(string name) => _state.GetValueOrDefault(name);

    /// <summary>
    /// Uploads a step's table and scalars to the device. They are kept until the next upload (not freed right
    /// after the asynchronous launch that reads them).
    /// </summary>
    public (Tensor Table, Tensor Scalars) Upload(int[] table, float[] scalars)
    {
        _pendingTable?.Dispose();
        _pendingScalars?.Dispose();
        using (var t = Tensor.FromArray(table)) _pendingTable = t.To(Device).DetachFromDisposeScope();
        using (var s = Tensor.FromArray(scalars)) _pendingScalars = s.To(Device).DetachFromDisposeScope();
        return (_pendingTable, _pendingScalars);
    }

    /// <summary>
    /// Releases the flat state buffers (after the optimizer disposed the state views on them: LoadStateDict);
    /// the next steps start new zeroed ones. Parameters and gradient slots stay where they are.
    /// </summary>
    public void ResetState()
    {
        foreach (var t in _state.Values) t.Dispose();
        _state.Clear();
    }

    private Tensor View(Tensor flat, long offset, Tensor like)
    {
        using var slice = flat.Narrow(0, offset, like.NumEl);
        return slice.View(like.ShapeArray());
    }

    /// <summary>
    /// Drops the layout: the parameters' gradient slots are cleared (the parameters stay views of the flat
    /// parameter buffer, which lives as long as they do); the flat state buffers are released once the state
    /// views on them are.
    /// </summary>
    public void Dispose()
    {
        foreach (var slot in _slots.Values)
        {
            slot.Parameter.GradSlot?.Dispose();
            slot.Parameter.GradSlot = null;
        }
        _slots.Clear();
        foreach (var t in _state.Values) t.Dispose();
        _state.Clear();
        _pendingTable?.Dispose();
        _pendingScalars?.Dispose();
        Parameters.Dispose();
        Grads.Dispose();
    }
}
