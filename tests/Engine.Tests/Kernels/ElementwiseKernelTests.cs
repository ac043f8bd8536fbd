using Engine.Runtime.Kernels;
using Engine.Tensors;
using Engine.Tensors.Kernels;
using static Engine.Tests.Kernels.KernelTestUtil;

namespace Engine.Tests.Kernels;

/// <summary>
/// kernels/Elementwise on the emulator and on OpenCL (PoCL): each op equals Engine.Tensors' CPU op
/// (x.Exp(), a.Add(b), ...) and a float64 reference, on odd shapes (not multiples of the 256-thread
/// group), scalars, empty tensors, broadcasting and non-contiguous inputs read through their strides.
/// </summary>
public class ElementwiseKernelTests
{
    private delegate void EmulatedUnary(Dim3 grid, Dim3 group, ArrayView<float> x, ArrayView<float> y, ElementwiseLayout layout);
    private delegate void EmulatedBinary(Dim3 grid, Dim3 group, ArrayView<float> a, ArrayView<float> b, ArrayView<float> y, ElementwiseLayout layout);

    private sealed record UnaryCase(string Name, KernelSource Source, EmulatedUnary Emulate, Func<Tensor, Tensor> Cpu, Func<double, double> Reference, double Lo, double Hi);
    private sealed record BinaryCase(string Name, KernelSource Source, EmulatedBinary Emulate, Func<Tensor, Tensor, Tensor> Cpu, Func<double, double, double> Reference);

    private static readonly UnaryCase[] UnaryOps =
    [
        new("exp", ElementwiseKernels.Launch.FloatUnary__Tensor_ExpOpSource, (g, b, x, y, l) => ElementwiseKernels.Launch.FloatUnary__Tensor_ExpOp(Emulator, g, b, x, y, l), x => x.Exp(), Math.Exp, -8, 8),
        new("log", ElementwiseKernels.Launch.FloatUnary__Tensor_LogOpSource, (g, b, x, y, l) => ElementwiseKernels.Launch.FloatUnary__Tensor_LogOp(Emulator, g, b, x, y, l), x => x.Log(), Math.Log, 1e-3, 50),
        new("tanh", ElementwiseKernels.Launch.FloatUnary__Tensor_TanhOpSource, (g, b, x, y, l) => ElementwiseKernels.Launch.FloatUnary__Tensor_TanhOp(Emulator, g, b, x, y, l), x => x.Tanh(), Math.Tanh, -6, 6),
        new("sigmoid", ElementwiseKernels.Launch.FloatUnary__Tensor_SigmoidOpSource, (g, b, x, y, l) => ElementwiseKernels.Launch.FloatUnary__Tensor_SigmoidOp(Emulator, g, b, x, y, l), x => x.Sigmoid(), v => 1 / (1 + Math.Exp(-v)), -20, 20),
        new("relu", ElementwiseKernels.Launch.NumericUnary__Tensor_ReluOpSource, (g, b, x, y, l) => ElementwiseKernels.Launch.NumericUnary__Tensor_ReluOp(Emulator, g, b, x, y, l), x => x.Relu(), v => Math.Max(v, 0), -3, 3),
        new("neg", ElementwiseKernels.Launch.NumericUnary__NegOpSource, (g, b, x, y, l) => ElementwiseKernels.Launch.NumericUnary__NegOp(Emulator, g, b, x, y, l), x => x.Neg(), v => -v, -3, 3),
    ];

    private static readonly BinaryCase[] BinaryOps =
    [
        new("add", ElementwiseKernels.Launch.Binary__Tensor_AddOpSource, (g, b, x, y, o, l) => ElementwiseKernels.Launch.Binary__Tensor_AddOp(Emulator, g, b, x, y, o, l), (a, b) => a.Add(b), (a, b) => a + b),
        new("sub", ElementwiseKernels.Launch.Binary__Tensor_SubOpSource, (g, b, x, y, o, l) => ElementwiseKernels.Launch.Binary__Tensor_SubOp(Emulator, g, b, x, y, o, l), (a, b) => a.Sub(b), (a, b) => a - b),
        new("mul", ElementwiseKernels.Launch.Binary__Tensor_MulOpSource, (g, b, x, y, o, l) => ElementwiseKernels.Launch.Binary__Tensor_MulOp(Emulator, g, b, x, y, o, l), (a, b) => a.Mul(b), (a, b) => a * b),
        new("div", ElementwiseKernels.Launch.Binary__Tensor_DivOpSource, (g, b, x, y, o, l) => ElementwiseKernels.Launch.Binary__Tensor_DivOp(Emulator, g, b, x, y, o, l), (a, b) => a.Div(b), (a, b) => a / b),
    ];

    // (shape, non-contiguous): odd sizes, a scalar, size-1 dims, an empty tensor, rank 4.
    private static readonly (long[] Shape, bool Strided)[] UnaryShapes =
        [([], false), ([7], false), ([3, 5], true), ([4, 1, 3], false), ([33, 17], true), ([0, 3], false), ([2, 3, 5, 7], true)];

    // (a, b, a strided, b strided): same shape, broadcasting both ways, scalar operand, empty output.
    private static readonly (long[] A, long[] B, bool StridedA, bool StridedB)[] BinaryShapes =
    [
        ([3, 5], [3, 5], false, false), ([4, 1, 3], [5, 1], true, false), ([7], [], false, false), ([1, 9], [6, 1], false, true),
        ([2, 3, 5, 7], [3, 1, 7], true, true), ([33, 17], [17], true, false), ([0, 3], [3], false, false),
    ];

    private static Tensor Input(Random rng, long[] shape, bool strided, double lo, double hi)
    {
        var x = TestUtil.Random(rng, shape, DType.Float32, lo, hi);
        if (!strided) return x;
        var view = TestUtil.NonContiguous(x);
        x.Dispose();
        return view;
    }

    private static void CheckUnary(UnaryCase op, (long[] Shape, bool Strided) input, bool openCL)
    {
        var rng = new Random(TestUtil.StableSeed(op.Name + ShapeUtil.Format(input.Shape)));
        using var x = Input(rng, input.Shape, input.Strided, op.Lo, op.Hi);
        using var cpu = op.Cpu(x);
        var reference = Doubles(x).Select(op.Reference).ToArray();
        var layout = ElementwisePlan.Unary(x);
        int groups = ElementwisePlan.Groups(x.NumEl);
        string what = $"{op.Name} {ShapeUtil.Format(input.Shape)}{(input.Strided ? " strided" : "")}";
        float[] got;
        if (openCL)
        {
            got = new float[x.NumEl];
            if (groups > 0) KernelRunner.OpenCL.Run(op.Source, groups, ElementwisePlan.GroupSize, StorageArray(x), got, layout);
        }
        else
        {
            using var y = Tensor.Zeros(input.Shape);
            if (groups > 0) op.Emulate(groups, ElementwisePlan.GroupSize, StorageView(x), View(y), layout);
            got = y.ToArray<float>();
        }
        // The CPU path may take TensorPrimitives' vector form (a few ulp from the scalar form the kernel runs).
        Close(cpu.ToArray<float>(), got, 1e-6, 4e-6, what + " vs CPU op");
        Close(reference, got, 1e-6, 4e-6, what + " vs float64");
    }

    private static void CheckBinary(BinaryCase op, (long[] A, long[] B, bool StridedA, bool StridedB) input, bool openCL)
    {
        var rng = new Random(TestUtil.StableSeed(op.Name + ShapeUtil.Format(input.A) + ShapeUtil.Format(input.B)));
        using var a = Input(rng, input.A, input.StridedA, -3, 3);
        using var b = Input(rng, input.B, input.StridedB, 0.25, 2); // positive: no division by ~0
        using var cpu = op.Cpu(a, b);
        var shape = cpu.ShapeArray();
        double[] da = Doubles(a), db = Doubles(b);
        var reference = new double[cpu.NumEl];
        for (long i = 0; i < reference.Length; i++)
        {
            var index = TestUtil.Unravel(i, shape);
            // float32 inputs, op in float64, rounded to float32: what a correctly rounded float op gives.
            reference[i] = (float)op.Reference(TestUtil.BroadcastRead(da, input.A, index), TestUtil.BroadcastRead(db, input.B, index));
        }
        var layout = ElementwisePlan.Binary(a, b);
        int groups = ElementwisePlan.Groups(cpu.NumEl);
        string what = $"{op.Name} {ShapeUtil.Format(input.A)}{(input.StridedA ? " strided" : "")} with {ShapeUtil.Format(input.B)}{(input.StridedB ? " strided" : "")}";
        float[] got;
        if (openCL)
        {
            got = new float[cpu.NumEl];
            if (groups > 0) KernelRunner.OpenCL.Run(op.Source, groups, ElementwisePlan.GroupSize, StorageArray(a), StorageArray(b), got, layout);
        }
        else
        {
            using var y = Tensor.Zeros(shape);
            if (groups > 0) op.Emulate(groups, ElementwisePlan.GroupSize, StorageView(a), StorageView(b), View(y), layout);
            got = y.ToArray<float>();
        }
        // One correctly rounded float operation: bit-identical to the CPU op and to the rounded float64 result.
        Close(cpu.ToArray<float>(), got, 0, 0, what + " vs CPU op");
        Close(reference, got, 0, 0, what + " vs float64");
    }

    [Fact]
    public void Unary_Emulator_MatchesCpuOpAndFloat64()
    {
        foreach (var op in UnaryOps)
        foreach (var shape in UnaryShapes)
            CheckUnary(op, shape, openCL: false);
    }

    [Fact]
    public void Binary_Emulator_BroadcastingAndStrided_MatchesCpuOpAndFloat64()
    {
        foreach (var op in BinaryOps)
        foreach (var shapes in BinaryShapes)
            CheckBinary(op, shapes, openCL: false);
    }

    [BackendFact("opencl")]
    public void Unary_OpenCL_MatchesCpuOpAndFloat64()
    {
        foreach (var op in UnaryOps)
        {
            foreach (var shape in UnaryShapes) CheckUnary(op, shape, openCL: true);
            CheckUnary(op, ([130, 1031], true), openCL: true); // 134k elements, many groups
        }
    }

    [BackendFact("opencl")]
    public void Binary_OpenCL_BroadcastingAndStrided_MatchesCpuOpAndFloat64()
    {
        foreach (var op in BinaryOps)
        {
            foreach (var shapes in BinaryShapes) CheckBinary(op, shapes, openCL: true);
            CheckBinary(op, ([130, 1, 1031], [7, 1], true, false), openCL: true);
        }
    }

    [Fact]
    public void Binary_Emulator_ExpandedView_ReadsStrideZero()
    {
        using var column = TestUtil.Random(new Random(5), [3, 1]);
        using var a = column.Expand([3, 4]); // stride 0 along dim 1, size 4
        using var b = TestUtil.Random(new Random(6), [3, 4]);
        using var cpu = a.Mul(b);
        using var y = Tensor.Zeros([3, 4]);
        var layout = ElementwisePlan.Binary(a, b);
        ElementwiseKernels.Launch.Binary__Tensor_MulOp(Emulator, ElementwisePlan.Groups(12), ElementwisePlan.GroupSize, StorageView(a), StorageView(b), View(y), layout);
        Assert.Equal(cpu.ToArray<float>(), y.ToArray<float>());
    }

    [Fact]
    public void Plan_CoalescesContiguousDimsAndDropsSizeOneDims()
    {
        using var x = Tensor.Zeros([4, 1, 5, 6]);
        var layout = ElementwisePlan.Unary(x);
        Assert.Equal(1, layout.Rank);
        Assert.Equal(120, layout.Shape[0]);
        Assert.Equal(1, layout.StrideA[0]);

        using var t = x.Transpose(0, 3); // [6, 1, 5, 4], strides [1, ., 6, 30]: nothing merges
        layout = ElementwisePlan.Unary(t);
        Assert.Equal(3, layout.Rank);

        using var b = Tensor.Zeros([5, 1]);
        layout = ElementwisePlan.Binary(x, b); // [4,1,5,6] with [5,1]: b broadcast on dims 0 and 3
        Assert.Equal(3, layout.Rank);
        Assert.Equal([4, 5, 6], new[] { layout.Shape[0], layout.Shape[1], layout.Shape[2] });
        Assert.Equal([0, 1, 0], new[] { layout.StrideB[0], layout.StrideB[1], layout.StrideB[2] });
    }

    [Fact]
    public void Plan_RejectsTensorsBeyondInt32Indexing()
    {
        var e = Assert.Throws<ArgumentException>(() => ElementwisePlan.Unary([1L << 16, 1L << 16], [1L << 16, 1], 0));
        Assert.Contains("elementwise kernel", e.Message);
    }
}
