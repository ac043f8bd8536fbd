// The README's example: a 4-32-1 MLP learns tanh(x0 * x1) with Engine's autograd.
// Self-checking: exits 1 unless the loss fell to under a fifth of where it started.
using Engine.Tensors;

var gen = new Generator(seed: 0);
using var x = Tensor.Randn([256, 4], generator: gen);               // inputs
using var y = (x.Narrow(1, 0, 1) * x.Narrow(1, 1, 1)).Tanh();        // target: tanh(x0 * x1)
var w1 = (Tensor.Randn([4, 32], generator: gen) * 0.5).RequiresGrad_(); // a 4-32-1 MLP
var b1 = Tensor.Zeros([32]).RequiresGrad_();
var w2 = (Tensor.Randn([32, 1], generator: gen) * 0.2).RequiresGrad_();
var b2 = Tensor.Zeros([1]).RequiresGrad_();
Tensor[] parameters = [w1, b1, w2, b2];
double first = double.NaN, last = double.NaN;
for (int step = 0; step <= 300; step++)
{
    using var scope = Tensor.NewDisposeScope();                    // frees this step's temporaries
    var prediction = x.MatMul(w1).Add(b1).Tanh().MatMul(w2).Add(b2);
    var loss = (prediction - y).Pow(2).Mean();
    loss.Backward();                                                // fills p.Grad for every parameter
    using (Tensor.NoGrad())
        foreach (var p in parameters) { p.CopyFrom_(p - p.Grad! * 0.1); p.Grad = null; }
    if (step % 100 == 0) Console.WriteLine($"step {step}: loss {loss.ToDouble():F4}");
    last = loss.ToDouble();
    if (step == 0) first = last;
}

bool learned = last < first / 5;
Console.WriteLine(learned ? $"OK: loss fell from {first:F4} to {last:F4}" : $"FAILED: loss went from {first:F4} to {last:F4}");
return learned ? 0 : 1;
