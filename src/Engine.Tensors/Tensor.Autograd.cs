using Engine.Tensors.AutoDiff;

namespace Engine.Tensors;

public sealed partial class Tensor
{
    /// <summary>
    /// Computes the gradient of this tensor with respect to every leaf that requires one, and adds
    /// it to the leaf's <see cref="Grad"/>.
    /// </summary>
    /// <param name="gradient">d(something)/d(this); may be omitted for a one-element tensor (1 is used).</param>
    /// <param name="retainGraph">Keep the graph's saved tensors so backward can run through it again.</param>
    /// <param name="createGraph">Record the backward computation itself, so gradients can be
    /// differentiated again (higher-order gradients). Implies keeping the graph.</param>
    public void Backward(Tensor? gradient = null, bool retainGraph = false, bool createGraph = false)
        => BackwardEngine.Run([this], [gradient], retainGraph || createGraph, createGraph, inputs: null, allowUnused: true);

    /// <summary>A view of the same elements that is cut from the graph (a leaf that requires no gradient).</summary>
    public Tensor Detach() => new(Storage, DType, _shape, _strides, Offset);

    /// <summary>Turns off graph recording on this thread until the returned scope is disposed.</summary>
    public static GradMode.GradModeScope NoGrad() => GradMode.Set(false);

    /// <summary>Starts a scope that disposes every tensor created on this thread until it ends.</summary>
    public static DisposeScope NewDisposeScope() => new();
}

/// <summary>Functional autograd: gradients of outputs with respect to chosen inputs.</summary>
public static class Autograd
{
    /// <summary>
    /// Returns d(outputs)/d(inputs), weighted by <paramref name="gradOutputs"/>, without touching any
    /// <see cref="Tensor.Grad"/>. With <paramref name="createGraph"/> the returned gradients are part of
    /// the graph, so they can be differentiated again (Hessian-vector products, gradient matching).
    /// </summary>
    /// <param name="outputs">Tensors to differentiate.</param>
    /// <param name="inputs">Tensors (requiring grad) to differentiate with respect to.</param>
    /// <param name="gradOutputs">One gradient per output; null entries (or null) mean 1 for one-element outputs.</param>
    /// <param name="retainGraph">Keep the graph for another backward (defaults to <paramref name="createGraph"/>).</param>
    /// <param name="createGraph">Record the gradient computation for higher-order derivatives.</param>
    /// <param name="allowUnused">Return null for inputs the outputs do not depend on instead of throwing.</param>
    public static Tensor?[] Grad(Tensor[] outputs, Tensor[] inputs, Tensor?[]? gradOutputs = null,
        bool? retainGraph = null, bool createGraph = false, bool allowUnused = false)
    {
        ArgumentNullException.ThrowIfNull(outputs);
        ArgumentNullException.ThrowIfNull(inputs);
        if (gradOutputs is not null && gradOutputs.Length != outputs.Length)
            throw new ArgumentException($"Autograd.Grad: {gradOutputs.Length} output gradients given for {outputs.Length} outputs.");
        return BackwardEngine.Run(outputs, gradOutputs, retainGraph ?? createGraph, createGraph, inputs, allowUnused)!;
    }

    /// <summary>Single-output, single-input form of <see cref="Grad(Tensor[], Tensor[], Tensor?[], bool?, bool, bool)"/>.</summary>
    public static Tensor Grad(Tensor output, Tensor input, Tensor? gradOutput = null, bool? retainGraph = null, bool createGraph = false)
        => Grad([output], [input], [gradOutput], retainGraph, createGraph)[0]!;
}
