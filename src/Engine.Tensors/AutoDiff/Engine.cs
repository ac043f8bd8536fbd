namespace Engine.Tensors.AutoDiff;

/// <summary>
/// Runs backward over the graph: orders the nodes reachable from the outputs (iteratively, so deep
/// graphs cannot overflow the stack), then visits each once, after every node that feeds it a
/// gradient, summing the gradients that arrive at each node.
/// </summary>
internal static class BackwardEngine
{
    /// <summary>
    /// Back-propagates <paramref name="gradOutputs"/> from <paramref name="outputs"/>. With
    /// <paramref name="inputs"/> null, gradients of leaves are added to their <see cref="Tensor.Grad"/>;
    /// otherwise the gradients of <paramref name="inputs"/> are returned and no <c>.Grad</c> changes.
    /// </summary>
    public static Tensor?[]? Run(Tensor[] outputs, Tensor?[]? gradOutputs, bool retainGraph, bool createGraph, Tensor[]? inputs, bool allowUnused)
    {
        string op = inputs is null ? "Backward" : "Autograd.Grad";
        var roots = new Node[outputs.Length];
        var rootGrads = new Tensor[outputs.Length];
        var owned = new HashSet<Tensor>(ReferenceEqualityComparer.Instance);
        for (int i = 0; i < outputs.Length; i++)
        {
            var o = outputs[i];
            roots[i] = Graph.EdgeOf(o) ?? throw new InvalidOperationException(
                $"{op}: output {i} (shape {ShapeUtil.Format(o.Shape)}) does not require grad and has no grad_fn; nothing to differentiate.");
            var g = gradOutputs?[i];
            if (g is null)
            {
                if (o.NumEl != 1)
                    throw new InvalidOperationException(
                        $"{op}: a gradient can be created implicitly only for one-element outputs; output {i} has shape {ShapeUtil.Format(o.Shape)}. Pass the output gradient explicitly.");
                using (GradMode.Set(false)) g = Tensor.OnesLike(o);
                owned.Add(g);
            }
            else if (!ShapeUtil.SameShape(g.Shape, o.Shape))
            {
                throw new ArgumentException($"{op}: gradient {i} has shape {ShapeUtil.Format(g.Shape)} but output {i} has shape {ShapeUtil.Format(o.Shape)}.");
            }
            rootGrads[i] = g;
        }

        var order = TopologicalOrder(roots);

        // Grad mode: which nodes lead to a requested input (only those are run).
        Dictionary<Node, int>? targets = null;
        HashSet<Node>? needed = null;
        if (inputs is not null)
        {
            targets = new Dictionary<Node, int>(ReferenceEqualityComparer.Instance);
            for (int i = 0; i < inputs.Length; i++)
            {
                var edge = Graph.EdgeOf(inputs[i]) ?? throw new ArgumentException(
                    $"{op}: input {i} (shape {ShapeUtil.Format(inputs[i].Shape)}) does not require grad.");
                targets[edge] = i;
            }
            needed = new HashSet<Node>(ReferenceEqualityComparer.Instance);
            for (int k = order.Count - 1; k >= 0; k--) // inputs-first order
            {
                var node = order[k];
                bool need = targets.ContainsKey(node);
                foreach (var n in node.Next) need |= n is not null && needed.Contains(n);
                if (need) needed.Add(node);
            }
        }

        var pending = new Dictionary<Node, Tensor>(ReferenceEqualityComparer.Instance);
        for (int i = 0; i < roots.Length; i++) Accumulate(pending, owned, roots[i], rootGrads[i], createGraph);

        var results = inputs is null ? null : new Tensor?[inputs.Length];
        using (GradMode.Set(createGraph))
        {
            foreach (var node in order)
            {
                if (!pending.Remove(node, out var grad)) continue;
                if (needed is not null && !needed.Contains(node)) { Drop(grad, owned); continue; }
                if (targets is not null && targets.TryGetValue(node, out int index))
                {
                    if (createGraph) { results![index] = grad; owned.Remove(grad); }
                    else results![index] = grad.Detach();
                    if (node is AccumulateGrad) { Drop(grad, owned); continue; }
                }
                if (node is AccumulateGrad acc)
                {
                    if (inputs is null) AccumulateIntoLeaf(acc.Variable, grad, createGraph, owned);
                    continue;
                }
                var inputGrads = node.Apply(grad);
                for (int i = 0; i < inputGrads.Length; i++)
                {
                    var next = node.Next[i];
                    var g = inputGrads[i];
                    if (next is null || g is null) continue;
                    if (ReferenceEquals(g, grad) || owned.Contains(g)) g = g.Alias(); // each pending gradient owned once
                    owned.Add(g);
                    Accumulate(pending, owned, next, g, createGraph);
                }
                if (!retainGraph) node.Release();
                if (!createGraph) Drop(grad, owned);
            }
        }
        foreach (var leftover in pending.Values) Drop(leftover, owned);

        if (results is not null && !allowUnused)
        {
            for (int i = 0; i < results.Length; i++)
                if (results[i] is null)
                    throw new InvalidOperationException(
                        $"{op}: input {i} (shape {ShapeUtil.Format(inputs![i].Shape)}) was not used to compute the outputs; pass allowUnused: true to get null for it.");
        }
        return results;
    }

    private static void Accumulate(Dictionary<Node, Tensor> pending, HashSet<Tensor> owned, Node node, Tensor grad, bool createGraph)
    {
        if (pending.TryGetValue(node, out var existing))
        {
            var sum = existing.Add(grad);
            Drop(existing, owned);
            Drop(grad, owned);
            owned.Add(sum);
            pending[node] = sum;
        }
        else
        {
            pending[node] = grad;
        }
    }

    private static void AccumulateIntoLeaf(Tensor leaf, Tensor grad, bool createGraph, HashSet<Tensor> owned)
    {
        if (leaf.IsDisposed) { Drop(grad, owned); return; }
        if (leaf.Grad is null)
        {
            if (!createGraph && leaf.GradSlot is { IsDisposed: false } slot)
            {
                // The leaf is a parameter of an optimizer's flat layout (Optim/FlatParameters.cs): its gradient
                // goes into its slot of the flat gradient buffer (a copy, as the Clone below), so the fused
                // optimizer step reads every gradient from one buffer.
                using (var detached = grad.Detach()) slot.CopyFrom_(detached);
                leaf.Grad = slot.Alias();
                Drop(grad, owned);
                return;
            }
            if (!createGraph && owned.Contains(grad) && grad.GradFn is null && grad.IsContiguous && !grad.Storage.IsShared)
            {
                // A gradient the engine made, contiguous, whose storage no other tensor references (e.g. the
                // gradient a fused loss computed in its forward): it becomes the leaf's .Grad without a copy,
                // as PyTorch steals such a gradient.
                owned.Remove(grad);
                leaf.Grad = grad;
                return;
            }
            // The leaf owns a fresh contiguous copy: the incoming gradient may be a broadcast view
            // or share storage with a tensor the caller still holds.
            leaf.Grad = createGraph ? grad.Clone() : grad.Detach().Clone();
        }
        else
        {
            var sum = createGraph ? leaf.Grad.Add(grad) : leaf.Grad.Detach().Add(grad.Detach());
            leaf.Grad = sum;
        }
        Drop(grad, owned);
    }

    /// <summary>Disposes a gradient the engine made (never one the caller passed in).</summary>
    private static void Drop(Tensor t, HashSet<Tensor> owned)
    {
        if (owned.Remove(t)) t.Dispose();
    }

    /// <summary>Nodes reachable from <paramref name="roots"/>, each before every node it feeds into.</summary>
    internal static List<Node> TopologicalOrder(Node[] roots)
    {
        var postOrder = new List<Node>();
        var visited = new HashSet<Node>(ReferenceEqualityComparer.Instance);
        var stack = new Stack<(Node Node, int NextIndex)>();
        foreach (var root in roots)
        {
            if (!visited.Add(root)) continue;
            stack.Push((root, 0));
            while (stack.Count > 0)
            {
                var (node, i) = stack.Pop();
                if (i < node.Next.Length)
                {
                    stack.Push((node, i + 1));
                    var child = node.Next[i];
                    if (child is not null && visited.Add(child)) stack.Push((child, 0));
                }
                else
                {
                    postOrder.Add(node);
                }
            }
        }
        postOrder.Reverse();
        return postOrder;
    }
}
