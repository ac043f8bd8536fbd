namespace Engine.Tensors.AutoDiff;

/// <summary>
/// A node of the autograd graph: the op that made one tensor. <see cref="Next"/> holds, per input of
/// the op, the node that gradient flows on to (null where the input needs no gradient).
/// </summary>
public abstract class Node
{
    private static long s_sequence;

    private protected Node(string name, Node?[] next)
    {
        Name = name;
        Next = next;
        Sequence = Interlocked.Increment(ref s_sequence);
    }

    /// <summary>The op's name (<c>mul</c>, <c>exp</c>, <c>accumulate_grad</c>, ...).</summary>
    public string Name { get; }

    /// <summary>Where each input's gradient goes.</summary>
    internal Node?[] Next { get; private set; }

    /// <summary>Creation order; later nodes can only depend on earlier ones.</summary>
    internal long Sequence { get; }

    /// <summary>Given the gradient of the output, the gradient of each input (null where not needed).</summary>
    internal abstract Tensor?[] Apply(Tensor gradOutput);

    /// <summary>Drops saved tensors; a later <see cref="Apply"/> fails with a clear message.</summary>
    internal virtual void Release() => Next = [];

    /// <inheritdoc />
    public override string ToString() => Name;
}

/// <summary>A recorded op: its backward formula, written with differentiable tensor ops.</summary>
internal sealed class FunctionNode : Node
{
    private Func<Tensor, Tensor?[]>? _backward;
    private readonly long[][] _inputShapes;
    private readonly DType[] _inputDTypes;

    public FunctionNode(string name, Node?[] next, Func<Tensor, Tensor?[]> backward, long[][] inputShapes, DType[] inputDTypes)
        : base(name, next)
    {
        _backward = backward;
        _inputShapes = inputShapes;
        _inputDTypes = inputDTypes;
    }

    internal override Tensor?[] Apply(Tensor gradOutput)
    {
        var backward = _backward ?? throw new InvalidOperationException(
            $"Backward through '{Name}' a second time: its saved tensors were freed after the first backward. Pass retainGraph: true to the first Backward call.");
        var grads = backward(gradOutput);
        if (grads.Length != Next.Length)
            throw new InvalidOperationException($"internal: backward of '{Name}' returned {grads.Length} gradients for {Next.Length} inputs.");
        for (int i = 0; i < grads.Length; i++)
        {
            var g = grads[i];
            if (g is null || Next[i] is null) continue;
            if (!ShapeUtil.SameShape(g.Shape, _inputShapes[i]))
                throw new InvalidOperationException(
                    $"internal: backward of '{Name}' returned a gradient of shape {ShapeUtil.Format(g.Shape)} for input {i} of shape {ShapeUtil.Format(_inputShapes[i])}.");
            if (g.DType != _inputDTypes[i])
                grads[i] = g.To(_inputDTypes[i]);
        }
        return grads;
    }

    /// <summary>Handles on tensors the backward reads; disposed on release.</summary>
    public Tensor[]? Saved { get; set; }

    internal override void Release()
    {
        _backward = null;
        if (Saved is not null) foreach (var t in Saved) t.Dispose();
        Saved = null;
        base.Release();
    }
}

/// <summary>The sink for a leaf tensor's gradient: adds it to <see cref="Tensor.Grad"/>.</summary>
internal sealed class AccumulateGrad : Node
{
    public AccumulateGrad(Tensor variable) : base("accumulate_grad", []) => Variable = variable;

    public Tensor Variable { get; }

    internal override Tensor?[] Apply(Tensor gradOutput) => [];

    internal override void Release() { }
}
