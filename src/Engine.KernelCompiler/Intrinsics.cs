using System.Collections.Generic;

namespace Engine.KernelCompiler;

/// <summary>
/// What the kernel API and the math functions become in each dialect. Math goes through ONE table
/// keyed by (function, operand type) — as ILGPU's PTX instruction tables — shared by XMath, MathF
/// and Math, so MathF.Exp and XMath.Exp on a float both become <c>expf</c> / <c>exp</c>.
/// </summary>
internal static class Intrinsics
{
    private static readonly Dictionary<(string Function, string Type), (string Cuda, string OpenCL)> Math = new()
    {
        [("Exp", "float")] = ("expf", "exp"), [("Exp", "double")] = ("exp", "exp"),
        [("Exp2", "float")] = ("exp2f", "exp2"), [("Exp2", "double")] = ("exp2", "exp2"),
        [("Log", "float")] = ("logf", "log"), [("Log", "double")] = ("log", "log"),
        [("Log2", "float")] = ("log2f", "log2"), [("Log2", "double")] = ("log2", "log2"),
        [("Log10", "float")] = ("log10f", "log10"), [("Log10", "double")] = ("log10", "log10"),
        [("Sqrt", "float")] = ("sqrtf", "sqrt"), [("Sqrt", "double")] = ("sqrt", "sqrt"),
        [("Rsqrt", "float")] = ("rsqrtf", "rsqrt"), [("Rsqrt", "double")] = ("rsqrt", "rsqrt"),
        [("Tanh", "float")] = ("tanhf", "tanh"), [("Tanh", "double")] = ("tanh", "tanh"),
        [("Erf", "float")] = ("erff", "erf"), [("Erf", "double")] = ("erf", "erf"),
        [("Erfc", "float")] = ("erfcf", "erfc"), [("Erfc", "double")] = ("erfc", "erfc"),
        [("Sin", "float")] = ("sinf", "sin"), [("Sin", "double")] = ("sin", "sin"),
        [("Cos", "float")] = ("cosf", "cos"), [("Cos", "double")] = ("cos", "cos"),
        [("Pow", "float")] = ("powf", "pow"), [("Pow", "double")] = ("pow", "pow"),
        [("Fma", "float")] = ("fmaf", "fma"), [("Fma", "double")] = ("fma", "fma"),
        [("FusedMultiplyAdd", "float")] = ("fmaf", "fma"), [("FusedMultiplyAdd", "double")] = ("fma", "fma"),
        [("Max", "float")] = ("fmaxf", "fmax"), [("Max", "double")] = ("fmax", "fmax"),
        [("Max", "int")] = ("max", "max"), [("Max", "long")] = ("max", "max"),
        [("Min", "float")] = ("fminf", "fmin"), [("Min", "double")] = ("fmin", "fmin"),
        [("Min", "int")] = ("min", "min"), [("Min", "long")] = ("min", "min"),
        [("Abs", "float")] = ("fabsf", "fabs"), [("Abs", "double")] = ("fabs", "fabs"),
        [("Abs", "int")] = ("abs", "abs"), [("Abs", "long")] = ("llabs", "abs"),
        [("Floor", "float")] = ("floorf", "floor"), [("Floor", "double")] = ("floor", "floor"),
        [("Ceiling", "float")] = ("ceilf", "ceil"), [("Ceiling", "double")] = ("ceil", "ceil"),
        [("ExpM1", "float")] = ("expm1f", "expm1"), [("ExpM1", "double")] = ("expm1", "expm1"),
        [("LogP1", "float")] = ("log1pf", "log1p"), [("LogP1", "double")] = ("log1p", "log1p"),
        [("Tan", "float")] = ("tanf", "tan"), [("Tan", "double")] = ("tan", "tan"),
        [("Sinh", "float")] = ("sinhf", "sinh"), [("Sinh", "double")] = ("sinh", "sinh"),
        [("Cosh", "float")] = ("coshf", "cosh"), [("Cosh", "double")] = ("cosh", "cosh"),
        [("Asin", "float")] = ("asinf", "asin"), [("Asin", "double")] = ("asin", "asin"),
        [("Acos", "float")] = ("acosf", "acos"), [("Acos", "double")] = ("acos", "acos"),
        [("Atan", "float")] = ("atanf", "atan"), [("Atan", "double")] = ("atan", "atan"),
        [("Atan2", "float")] = ("atan2f", "atan2"), [("Atan2", "double")] = ("atan2", "atan2"),
        [("Cbrt", "float")] = ("cbrtf", "cbrt"), [("Cbrt", "double")] = ("cbrt", "cbrt"),
        [("Hypot", "float")] = ("hypotf", "hypot"), [("Hypot", "double")] = ("hypot", "hypot"),
        [("CopySign", "float")] = ("copysignf", "copysign"), [("CopySign", "double")] = ("copysign", "copysign"),
        [("Truncate", "float")] = ("truncf", "trunc"), [("Truncate", "double")] = ("trunc", "trunc"),
        // C#'s Round(x) rounds half to even, as rint in the default rounding mode (C's round does not).
        [("Round", "float")] = ("rintf", "rint"), [("Round", "double")] = ("rint", "rint"),
        [("Max", "uint")] = ("max", "max"), [("Min", "uint")] = ("min", "min"),
        [("IsNaN", "float")] = ("isnan", "isnan"), [("IsNaN", "double")] = ("isnan", "isnan"),
        [("IsInfinity", "float")] = ("isinf", "isinf"), [("IsInfinity", "double")] = ("isinf", "isinf"),
    };

    /// <summary>Types whose static methods are looked up in the math table.</summary>
    public static bool IsMathType(string fullName)
        => fullName is "Engine.Runtime.Kernels.XMath" or "System.MathF" or "System.Math" or "float" or "double";

    /// <summary>The C function for <paramref name="function"/> on <paramref name="type"/> (the C# keyword of the first operand).</summary>
    public static string? MathFunction(string function, string type, Target target)
        => Math.TryGetValue((function, type), out var names) ? (target == Target.Cuda ? names.Cuda : names.OpenCL) : null;

    private static string LinearCuda => "((int)(threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z)))";
    private static string LinearOpenCL => "((int)(get_local_id(0) + get_local_size(0) * (get_local_id(1) + get_local_size(1) * get_local_id(2))))";

    /// <summary>Grid/Group/Warp properties (key: "Type.Property").</summary>
    public static string? Index(string member, Target target)
    {
        bool cuda = target == Target.Cuda;
        string C(string cudaVar, string axis) => $"((int){cudaVar}.{axis})";
        string O(string fn, int dim) => $"((int){fn}({dim}))";
        return member switch
        {
            "Grid.IdxX" => cuda ? C("blockIdx", "x") : O("get_group_id", 0),
            "Grid.IdxY" => cuda ? C("blockIdx", "y") : O("get_group_id", 1),
            "Grid.IdxZ" => cuda ? C("blockIdx", "z") : O("get_group_id", 2),
            "Grid.DimX" => cuda ? C("gridDim", "x") : O("get_num_groups", 0),
            "Grid.DimY" => cuda ? C("gridDim", "y") : O("get_num_groups", 1),
            "Grid.DimZ" => cuda ? C("gridDim", "z") : O("get_num_groups", 2),
            "Grid.GlobalIndexX" => cuda ? "((int)(blockIdx.x * blockDim.x + threadIdx.x))" : O("get_global_id", 0),
            "Grid.GlobalIndexY" => cuda ? "((int)(blockIdx.y * blockDim.y + threadIdx.y))" : O("get_global_id", 1),
            "Group.IdxX" => cuda ? C("threadIdx", "x") : O("get_local_id", 0),
            "Group.IdxY" => cuda ? C("threadIdx", "y") : O("get_local_id", 1),
            "Group.IdxZ" => cuda ? C("threadIdx", "z") : O("get_local_id", 2),
            "Group.DimX" => cuda ? C("blockDim", "x") : O("get_local_size", 0),
            "Group.DimY" => cuda ? C("blockDim", "y") : O("get_local_size", 1),
            "Group.DimZ" => cuda ? C("blockDim", "z") : O("get_local_size", 2),
            "Group.LinearIndex" => cuda ? LinearCuda : LinearOpenCL,
            "Warp.LaneIdx" => $"({(cuda ? LinearCuda : LinearOpenCL)} % 32)",
            "Warp.WarpIdx" => $"({(cuda ? LinearCuda : LinearOpenCL)} / 32)",
            _ => null,
        };
    }

    public static string Barrier(Target target) => target == Target.Cuda ? "__syncthreads()" : "barrier(CLK_LOCAL_MEM_FENCE | CLK_GLOBAL_MEM_FENCE)";

    /// <summary>Group size bound of the OpenCL shuffle exchange buffer (as the emulator's 1024-thread limit).</summary>
    public const int ShuffleBufferSize = 1024;
    public const string ShuffleBuffer = "__engine_shfl_buf";

    /// <summary>The OpenCL kernel-scope buffer of Group.ReduceSum/ReduceMax.</summary>
    public const string ReduceBuffer = "__engine_reduce_buf";

    /// <summary>
    /// How OpenCL device functions are declared: always inlined. PoCL runs a work-group's items as
    /// loops split at barriers; a barrier inside a called (not inlined) function in a loop gave wrong
    /// results a few times per thousand launches under load (ReduceRows with warp shuffles, reproduced
    /// 49 bad rows of 19,200 with plain `static`, 0 with always_inline). Kernels cannot recurse, so
    /// inlining every function is always possible.
    /// </summary>
    public const string OpenCLFunction = "static inline __attribute__((always_inline)) ";

    /// <summary>Helper C functions, emitted once per source when used. {AS} is the OpenCL address space.</summary>
    public static string Helper(string name, Target target)
    {
        if (name.StartsWith("max_nan_") || name.StartsWith("min_nan_"))
        {
            bool isFloat = name.EndsWith("_f");
            string t = isFloat ? "float" : "double";
            string fn = (name.StartsWith("max") ? "fmax" : "fmin") + (isFloat && target == Target.Cuda ? "f" : "");
            return $"{(target == Target.Cuda ? "static __device__ " : "static ")}{t} __engine_{name}({t} a, {t} b)\n{{\n" +
                   $"    return (a != a || b != b) ? a + b : {fn}(a, b);\n}}\n";
        }
        if (name.StartsWith("warp_") || name.StartsWith("group_"))
            return ReduceHelper(name, target);
        if (target == Target.Cuda)
            return name switch
            {
                "atomic_max_f" =>
                    "static __device__ float __engine_atomic_max_f(float* addr, float value)\n{\n" +
                    "    int old = *(volatile int*)addr;\n" +
                    "    while (value > __int_as_float(old)) {\n" +
                    "        int prev = atomicCAS((int*)addr, old, __float_as_int(value));\n" +
                    "        if (prev == old) break;\n        old = prev;\n    }\n    return __int_as_float(old);\n}\n",
                _ => "",
            };
        string As(string space) => space == "g" ? "__global" : "__local";
        if (name.StartsWith("atomic_add_f_"))
        {
            string s = name.Substring(name.Length - 1);
            return $"static float __engine_{name}(volatile {As(s)} float* addr, float value)\n{{\n" +
                   $"    volatile {As(s)} int* bits = (volatile {As(s)} int*)addr;\n" +
                   "    int old = *bits, prev;\n" +
                   "    while ((prev = atomic_cmpxchg(bits, old, as_int(as_float(old) + value))) != old) old = prev;\n" +
                   "    return as_float(old);\n}\n";
        }
        if (name.StartsWith("atomic_max_f_"))
        {
            string s = name.Substring(name.Length - 1);
            return $"static float __engine_{name}(volatile {As(s)} float* addr, float value)\n{{\n" +
                   $"    volatile {As(s)} int* bits = (volatile {As(s)} int*)addr;\n" +
                   "    int old = *bits, prev;\n" +
                   "    while (value > as_float(old) && (prev = atomic_cmpxchg(bits, old, as_int(value))) != old) old = prev;\n" +
                   "    return as_float(old);\n}\n";
        }
        return name switch
        {
            // PoCL has no subgroups: a warp shuffle is a round trip through a group-local buffer
            // between two group barriers, so (unlike CUDA) every thread of the GROUP must call it.
            "shfl" =>
                OpenCLFunction + "float __engine_shfl(__local float* buf, float value, int source)\n{\n" +
                $"    int t = {LinearOpenCL};\n" +
                "    int n = (int)(get_local_size(0) * get_local_size(1) * get_local_size(2));\n" +
                "    buf[t] = value;\n    barrier(CLK_LOCAL_MEM_FENCE);\n" +
                "    float r = buf[source >= 0 && source < n ? source : t];\n" +
                "    barrier(CLK_LOCAL_MEM_FENCE);\n    return r;\n}\n",
            "shfl_xor" =>
                OpenCLFunction + "float __engine_shfl_xor(__local float* buf, float value, int mask)\n{\n" +
                $"    int t = {LinearOpenCL};\n" +
                "    return __engine_shfl(buf, value, (t & ~31) | ((t & 31) ^ mask));\n}\n",
            "shfl_down" =>
                OpenCLFunction + "float __engine_shfl_down(__local float* buf, float value, int delta)\n{\n" +
                $"    int t = {LinearOpenCL};\n" +
                "    return __engine_shfl(buf, value, (t & 31) + delta < 32 ? t + delta : t);\n}\n",
            _ => "",
        };
    }

    /// <summary>
    /// Group/warp reductions. Group: s[t] = v; for stride = pow2ceil(n)/2 .. 1: s[t] ⊕= s[t + stride]
    /// where t + stride &lt; n; result s[0] (the emulator runs the same tree, so all backends agree
    /// bitwise). Warp: butterfly v ⊕= shfl_xor(v, 16 .. 1). ⊕ is + or fmax.
    /// </summary>
    private static string ReduceHelper(string name, Target target)
    {
        bool cuda = target == Target.Cuda, isMax = name.EndsWith("_max");
        string Combine(string a, string b) => isMax ? $"{(cuda ? "fmaxf" : "fmax")}({a}, {b})" : $"{a} + {b}";
        if (name.StartsWith("warp_"))
        {
            return cuda
                ? $"static __device__ float __engine_{name}(float v)\n{{\n" +
                  $"    for (int m = 16; m > 0; m >>= 1) v = {Combine("v", "__shfl_xor_sync(0xffffffffu, v, m)")};\n    return v;\n}}\n"
                : OpenCLFunction + $"float __engine_{name}(__local float* buf, float v)\n{{\n" +
                  $"    for (int m = 16; m > 0; m >>= 1) v = {Combine("v", "__engine_shfl_xor(buf, v, m)")};\n    return v;\n}}\n";
        }
        string sync = cuda ? "__syncthreads()" : "barrier(CLK_LOCAL_MEM_FENCE)";
        string head = cuda
            ? $"static __device__ float __engine_{name}(float v)\n{{\n    __shared__ float s[{ShuffleBufferSize}];\n" +
              "    int n = (int)(blockDim.x * blockDim.y * blockDim.z);\n"
            : OpenCLFunction + $"float __engine_{name}(__local float* s, float v)\n{{\n" +
              "    int n = (int)(get_local_size(0) * get_local_size(1) * get_local_size(2));\n";
        return head +
               $"    int t = {(cuda ? LinearCuda : LinearOpenCL)};\n" +
               $"    s[t] = v;\n    {sync};\n" +
               "    int stride = 1;\n    while (stride < n) stride <<= 1;\n" +
               "    for (stride >>= 1; stride > 0; stride >>= 1)\n    {\n" +
               $"        if (t < stride && t + stride < n) s[t] = {Combine("s[t]", "s[t + stride]")};\n        {sync};\n    }}\n" +
               $"    float r = s[0];\n    {sync};\n    return r;\n}}\n";
    }

    /// <summary>Helpers a helper needs (emitted before it).</summary>
    public static IEnumerable<string> HelperDependencies(string name)
        => name is "shfl_xor" or "shfl_down" ? ["shfl"]
         : name is "warp_sum" or "warp_max" ? ["shfl_xor"]
         : [];
}
