"""Training experiments on real data sets, the book's way (uses the runtime).

May import: errors, units, results, plumbing, user_code, zoo, probe, runtime, analysis (never
bench, report or the API; the faces pass in the report's curves).

  formats   the on-disk formats: IDX files (MNIST, Fashion-MNIST) and CIFAR-10's pickled batches
  datasets  which data sets exist, where their files live, loading them; a synthetic stand-in
  recipes   each zoo model's default recipe (the book's, from zoo.book) and the user's overrides
  plan      a sweep's plan: data loaded, models settled to it, everything checked up front
  sweep     every job of a plan on every device, written as each epoch ends
  loader    a data set on the training device as uint8 tensors; batches resized and scaled there
  runner    one model on one device: the epochs, NaN and out-of-memory handling, resuming
  distributed  the same run on N data-parallel ranks (DDP, DistributedSampler), launched locally
  outputs   the run directory: per-epoch CSV, checkpoints, train.json, the curves

The package is named ``training`` (not ``train``) because ``archprobe.train`` is the API
function: importing a subpackage of that name would replace the function on the package.
"""
