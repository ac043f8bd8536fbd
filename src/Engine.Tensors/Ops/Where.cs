using Engine.Tensors.AutoDiff;
using Engine.Tensors.Cpu;

namespace Engine.Tensors;

/// <summary>Selection by a bool mask.</summary>
public sealed partial class Tensor
{
    /// <summary>
    /// Elementwise <paramref name="condition"/> ? <paramref name="a"/> : <paramref name="b"/>. The three
    /// broadcast together; a and b are promoted to a common dtype. Gradients: where(cond, g, 0) to a and
    /// where(cond, 0, g) to b, each summed to its input's shape (saves the condition).
    /// </summary>
    /// <exception cref="ArgumentException">The condition is not bool, or the shapes do not broadcast.</exception>
    public static Tensor Where(Tensor condition, Tensor a, Tensor b)
    {
        ArgumentNullException.ThrowIfNull(condition);
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        var y = Kernels.KernelDispatch.IsAccelerated(a) ? Kernels.KernelDispatch.Where("where", condition, a, b) : ElementwiseDispatch.Where("where", condition, a, b);
        bool ga = a.RequiresGrad, gb = b.RequiresGrad;
        var (sa, sb) = (a._shape, b._shape);
        return Graph.Record(y, "where", [a, b], [condition], (g, s) =>
        {
            using var zero = ScalarLike(0, g.DType, g.Device);
            Tensor? da = null, db = null;
            if (ga)
            {
                using var full = Where(s[0], g, zero);
                da = full.SumToShape(sa);
                if (ReferenceEquals(da, full)) da = full.Alias();
            }
            if (gb)
            {
                using var full = Where(s[0], zero, g);
                db = full.SumToShape(sb);
                if (ReferenceEquals(db, full)) db = full.Alias();
            }
            return [da, db];
        });
    }

    /// <summary><see cref="Where(Tensor, Tensor, Tensor)"/> with a number for b (it takes a's dtype as in <see cref="Add(double)"/>).</summary>
    public static Tensor Where(Tensor condition, Tensor a, double b)
    {
        ArgumentNullException.ThrowIfNull(a);
        using var s = a.ScalarOf(b);
        return Where(condition, a, s);
    }

    /// <summary><see cref="Where(Tensor, Tensor, Tensor)"/> with a number for a (it takes b's dtype as in <see cref="Add(double)"/>).</summary>
    public static Tensor Where(Tensor condition, double a, Tensor b)
    {
        ArgumentNullException.ThrowIfNull(b);
        using var s = b.ScalarOf(a);
        return Where(condition, s, b);
    }
}
