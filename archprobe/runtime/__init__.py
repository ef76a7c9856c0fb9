"""The runtime shared by every measurement on a real device: throughput, training experiments
and multi-process runs. May import: errors, units, results, plumbing, user_code, zoo, probe.

  backends     the CPU and CUDA devices behind one ``Backend`` protocol (settings, timers,
               memory, cleanup), and which devices a run may use
  timing       timers behind a ``Timer`` protocol, the warm-up-then-time loop, statistics
  precision    dtypes and autocast
  step         the training step (model, optimizer, loss_fn, scaler) and synthetic batches
  environment  the setup a number was measured under
  sink         rows appended to a CSV file as they arrive
  memory       the peak memory of one real step (what the memory prediction is checked against)
  distributed  a rank's place, device, threads and process group; the collectives; failures
  launch       local ranks through torch.distributed's elastic launcher (throughput, training)
"""
