namespace Engine.Tensors.Kernels;

/// <summary>Optimizer updates of parameters on a device, written with device tensor ops.</summary>
internal static partial class KernelDispatch
{
    /// <summary>
    /// One SGD step in place on a device (Optim/SGD.cs's rule): d = g + wd·p; with momentum
    /// buf = first ? d : mom·buf + (1 − dampening)·d, d = nesterov ? d + mom·buf : buf; p ← p − lr·d.
    /// Each product and sum is its own float32 kernel with the scalars rounded to float as the CPU
    /// loop rounds them, and neither side fuses a multiply-add, so the result equals the CPU's
    /// bit for bit. (A fused one-kernel version over all parameters is kernels/Optim's job.)
    /// </summary>
    public static void SgdStep(Tensor parameter, Tensor grad, Tensor? buffer, double lr, double weightDecay, double momentum, double dampening, bool nesterov, bool first)
    {
        const string op = "sgd_step";
        CheckSameDevice(op, parameter, grad);
        RequireFloat32(op, parameter);
        RequireFloat32(op, grad);
        using var _ = Tensor.NoGrad();
        var d = grad.Alias();
        try
        {
            if (weightDecay != 0)
            {
                using var decay = parameter.Mul(weightDecay);
                var next = d.Add(decay);
                d.Dispose();
                d = next;
            }
            if (momentum != 0)
            {
                Tensor buf;
                if (first) buf = d.Alias();
                else
                {
                    using var old = buffer!.Mul(momentum);
                    using var fresh = d.Mul(1 - dampening);
                    buf = old.Add(fresh);
                }
                using (buf)
                {
                    buffer!.CopyFrom_(buf);
                    Tensor next;
                    if (nesterov)
                    {
                        using var ahead = buf.Mul(momentum);
                        next = d.Add(ahead);
                    }
                    else next = buf.Alias();
                    d.Dispose();
                    d = next;
                }
            }
            using var step = d.Mul(lr);
            using var updated = parameter.Sub(step);
            parameter.CopyFrom_(updated);
        }
        finally
        {
            d.Dispose();
        }
    }
}
