using Engine.Data;
using Engine.Tensors.NN;

namespace Engine.Distillation.Methods;

/// <summary>One generation of a born-again sequence.</summary>
/// <param name="Generation">0 for the first network (trained from the labels or given), then 1, 2, ...</param>
/// <param name="Model">The trained model (the caller disposes it, unless it was given as generation 0).</param>
/// <param name="Result">Its training run; null for a given generation 0.</param>
public sealed record BornAgainGeneration(int Generation, Module Model, MethodRunResult? Result);

/// <summary>
/// Born-again networks (Furlanello et al. 2018): generation 0 is trained from the labels (or given);
/// generation k+1, of the same architecture, is trained by <see cref="BornAgainMethod"/> from the
/// frozen generation k.
/// </summary>
public static class BornAgain
{
    /// <summary>
    /// Trains <paramref name="generations"/> born-again generations after generation 0
    /// (<paramref name="generation0"/>, or one trained here from the labels), each built by
    /// <paramref name="newModel"/>(k) and trained with <paramref name="settings"/>. Returns every
    /// generation, 0 first.
    /// </summary>
    public static IReadOnlyList<BornAgainGeneration> Train(Func<int, Module> newModel, Module? generation0, int generations, MethodTrainSettings settings,
        ImageDataset train, ImageDataset test, ITrainingObserver? observer = null, double temperature = 1, double alpha = 1)
    {
        ArgumentNullException.ThrowIfNull(newModel);
        if (generations < 1) throw new ArgumentOutOfRangeException(nameof(generations), generations, "ban: at least one born-again generation.");
        var result = new List<BornAgainGeneration>();
        try
        {
            if (generation0 is null)
            {
                var m = newModel(0);
                result.Add(new BornAgainGeneration(0, m, null));
                using var scratch = new CrossEntropyMethod(m);
                result[0] = new BornAgainGeneration(0, m, MethodTrainer.Train(scratch, settings, train, test, observer, "ban generation 0"));
            }
            else result.Add(new BornAgainGeneration(0, generation0, null));
            for (int k = 1; k <= generations; k++)
            {
                var student = newModel(k);
                result.Add(new BornAgainGeneration(k, student, null));
                using var method = new BornAgainMethod(student, result[k - 1].Model, temperature, alpha);
                result[k] = new BornAgainGeneration(k, student, MethodTrainer.Train(method, settings, train, test, observer, $"ban generation {k}"));
            }
            return result;
        }
        catch
        {
            foreach (var g in result) if (!ReferenceEquals(g.Model, generation0)) g.Model.Dispose();
            throw;
        }
    }
}
