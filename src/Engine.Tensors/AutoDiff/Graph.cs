namespace Engine.Tensors.AutoDiff;

/// <summary>Records ops into the autograd graph. Each op calls <c>Record</c> next to its forward.</summary>
internal static class Graph
{
    /// <summary>
    /// Makes <paramref name="result"/> the output of a graph node when grad mode is on and any input
    /// requires a gradient. <paramref name="backward"/> maps the output's gradient to one gradient
    /// per input (null where an input needs none); it is written with differentiable tensor ops, so
    /// running it with grad mode on (createGraph) records the graph of the gradient itself.
    /// </summary>
    public static Tensor Record(Tensor result, string name, Tensor[] inputs, Func<Tensor, Tensor?[]> backward)
    {
        if (!GradMode.IsEnabled) return result;
        bool any = false;
        foreach (var input in inputs) any |= input.RequiresGrad;
        if (!any) return result;
        var next = new Node?[inputs.Length];
        var shapes = new long[inputs.Length][];
        var dtypes = new DType[inputs.Length];
        for (int i = 0; i < inputs.Length; i++)
        {
            next[i] = EdgeOf(inputs[i]);
            shapes[i] = inputs[i].ShapeInternal;
            dtypes[i] = inputs[i].DType;
        }
        result.SetGradFn(new FunctionNode(name, next, backward, shapes, dtypes));
        return result;
    }

    /// <summary>
    /// Record for an op whose backward reads tensors from the forward (PyTorch's save_for_backward).
    /// The node keeps its own handles on <paramref name="saved"/>, so the caller may dispose its
    /// tensors; the handles are released after backward (unless the graph is retained).
    /// </summary>
    public static Tensor Record(Tensor result, string name, Tensor[] inputs, Tensor[] saved, Func<Tensor, Tensor[], Tensor?[]> backward)
    {
        if (!GradMode.IsEnabled || !inputs.Any(i => i.RequiresGrad)) return result;
        var handles = new Tensor[saved.Length];
        Record(result, name, inputs, g => backward(g, handles));
        // Handles are taken after the node is set, so a saved result (exp, tanh, sigmoid save y) carries
        // its grad_fn: a createGraph backward then differentiates through y as well.
        for (int i = 0; i < saved.Length; i++) handles[i] = saved[i].Alias().DetachFromDisposeScope();
        ((FunctionNode)result.GradFn!).Saved = handles;
        return result;
    }

    /// <summary>Record for a one-input op.</summary>
    public static Tensor Record(Tensor result, string name, Tensor input, Func<Tensor, Tensor> backward)
        => Record(result, name, [input], g => [backward(g)]);

    /// <summary>The node a gradient for <paramref name="t"/> flows into (null if it needs none).</summary>
    public static Node? EdgeOf(Tensor t)
    {
        if (!t.RequiresGrad) return null;
        if (t.GradFn is not null) return t.GradFn;
        return t.Accumulator ??= new AccumulateGrad(t);
    }
}
