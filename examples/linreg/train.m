% train.m - linear regression by batch gradient descent with L2 regularisation.
%
% Laptop:  octave-cli train.m            (outputs go to ./output)
% CloudML: parameters arrive as CLOUDML_PARAM_<NAME> environment variables;
%          every output is written to $CLOUDML_OUTPUT_DIR.
%
% Loss minimised: J(w) = mean((X*w - y).^2) + lambda * sum(w(2:end).^2)
% (the bias w(1) is not regularised).

1;  % marks this file as a script so the helper functions below can be defined

function v = env_or(name, default)
  % Text value of an environment variable, or default when unset or empty.
  v = getenv(name);
  if isempty(v)
    v = default;
  end
end

function x = param(name, default)
  % Numeric value of CLOUDML_PARAM_<NAME>, or default when it is absent.
  txt = getenv(["CLOUDML_PARAM_" upper(name)]);
  if isempty(txt)
    x = default;
    return;
  end
  x = str2double(txt);
  if ! isfinite(x)
    error("linreg: CLOUDML_PARAM_%s=\"%s\" is not a number", upper(name), txt);
  end
end

function write_metrics(file, names, values)
  % Writes a flat JSON object of name to number. JSON has no NaN or
  % infinity, so those are written as the strings CloudML reads: "NaN",
  % "Infinity", "-Infinity" (jsonencode would write null for all three).
  fid = fopen(file, "w");
  if fid < 0
    error("linreg: cannot write %s", file);
  end
  fprintf(fid, "{");
  sep = "";
  for i = 1:numel(names)
    v = values(i);
    if isnan(v)
      txt = "\"NaN\"";
    elseif v == Inf
      txt = "\"Infinity\"";
    elseif v == -Inf
      txt = "\"-Infinity\"";
    else
      txt = sprintf("%.10g", v);
    end
    fprintf(fid, "%s\n  \"%s\": %s", sep, names{i}, txt);
    sep = ",";
  end
  fprintf(fid, "\n}\n");
  fclose(fid);
end

function run_training()
  % ---- configuration ------------------------------------------------------
  lr = param("lr", 0.1);
  lambda = param("lambda", 0);
  epochs = round(param("epochs", 300));
  if lr <= 0 || lambda < 0 || epochs < 1
    error("linreg: need lr > 0, lambda >= 0, epochs >= 1 (got %g, %g, %d)", lr, lambda, epochs);
  end
  out_dir = env_or("CLOUDML_OUTPUT_DIR", "output");
  if ! exist(out_dir, "dir") && ! mkdir(out_dir)
    error("linreg: cannot create output directory %s", out_dir);
  end

  % The shipped data.csv sits next to this script; a data source named
  % data.csv staged by CloudML ($CLOUDML_DATA_DIR/data.csv) takes precedence.
  data_file = fullfile(fileparts(mfilename("fullpath")), "data.csv");
  data_dir = getenv("CLOUDML_DATA_DIR");
  if ! isempty(data_dir) && exist(fullfile(data_dir, "data.csv"), "file")
    data_file = fullfile(data_dir, "data.csv");
  end

  printf("task %s of %s, attempt %s\n", env_or("CLOUDML_TASK_INDEX", "0"), ...
         env_or("CLOUDML_TASK_COUNT", "1"), env_or("CLOUDML_ATTEMPT", "1"));
  printf("lr %g lambda %g epochs %d\n", lr, lambda, epochs);

  % ---- data -----------------------------------------------------------------
  fid = fopen(data_file, "r");
  if fid < 0
    error("linreg: cannot open %s", data_file);
  end
  header = strtrim(fgetl(fid));
  fclose(fid);
  names = strsplit(header, ",");
  D = dlmread(data_file, ",", 1, 0);
  if size(D, 2) != numel(names) || size(D, 1) < 10
    error("linreg: %s: expected a header and at least 10 rows of %d columns", data_file, numel(names));
  end
  feature_names = names(1:end-1);
  X = D(:, 1:end-1);
  y = D(:, end);
  n = rows(X);
  printf("data %s: %d rows, %d features, target %s\n", data_file, n, columns(X), names{end});

  % Deterministic split: a fixed permutation, first 80%% train, rest validation.
  rand("state", 1);
  [~, perm] = sort(rand(n, 1));
  n_train = round(0.8 * n);
  tr = perm(1:n_train);
  va = perm(n_train+1:end);

  % Standardise with training statistics only, then add the bias column.
  mu = mean(X(tr, :));
  sigma = std(X(tr, :));
  sigma(sigma == 0) = 1;
  Z = [ones(n, 1), (X - mu) ./ sigma];
  Ztr = Z(tr, :);  ytr = y(tr);
  Zva = Z(va, :);  yva = y(va);

  % ---- batch gradient descent --------------------------------------------------
  w = zeros(columns(Z), 1);
  reg = [0; ones(columns(Z) - 1, 1)];     % no penalty on the bias
  history = zeros(epochs, 3);
  print_every = max(1, round(epochs / 10));
  diverged = false;
  done = 0;
  % With a stable learning rate gradient descent on this quadratic loss never
  % goes above the starting loss (w = 0); far above it means divergence.
  loss0 = mean(ytr .^ 2);
  for epoch = 1:epochs
    residual = Ztr * w - ytr;
    grad = (2 / n_train) * (Ztr' * residual) + 2 * lambda * (reg .* w);
    w = w - lr * grad;
    train_mse = mean((Ztr * w - ytr) .^ 2);
    val_mse = mean((Zva * w - yva) .^ 2);
    history(epoch, :) = [epoch, train_mse, val_mse];
    done = epoch;
    if ! isfinite(train_mse) || ! isfinite(val_mse) || train_mse > 1e3 * loss0
      diverged = true;
      printf("epoch %d: loss diverged (train_mse %g); lr %g is too large\n", epoch, train_mse, lr);
      break;
    end
    if mod(epoch, print_every) == 0 || epoch == 1
      printf("epoch %d train_mse %.6g val_mse %.6g\n", epoch, train_mse, val_mse);
    end
  end
  history = history(1:done, :);

  % ---- outputs ----------------------------------------------------------------------
  if diverged
    % metrics.json says so: a sweep ranks non-finite values last.
    train_mse = Inf;
    val_mse = Inf;
    r2_val = NaN;
  else
    r2_val = 1 - sum((Zva * w - yva) .^ 2) / sum((yva - mean(yva)) .^ 2);
  end

  % Weights mapped back to raw feature units: y = b + sum(coef .* x).
  coef = w(2:end) ./ sigma';
  bias = w(1) - sum(coef .* mu');
  fid = fopen(fullfile(out_dir, "model.csv"), "w");
  fprintf(fid, "term,weight_standardised,weight_raw,feature_mean,feature_std\n");
  fprintf(fid, "bias,%.10g,%.10g,0,1\n", w(1), bias);
  for j = 1:numel(feature_names)
    fprintf(fid, "%s,%.10g,%.10g,%.10g,%.10g\n", feature_names{j}, w(j+1), coef(j), mu(j), sigma(j));
  end
  fclose(fid);

  fid = fopen(fullfile(out_dir, "loss_history.csv"), "w");
  fprintf(fid, "epoch,train_mse,val_mse\n");
  fprintf(fid, "%d,%.10g,%.10g\n", history');
  fclose(fid);

  write_metrics(fullfile(out_dir, "metrics.json"), ...
                {"train_mse", "val_mse", "r2_val", "epochs", "diverged"}, ...
                [train_mse, val_mse, r2_val, done, diverged]);

  if diverged
    printf("done: diverged after %d epochs; metrics report val_mse Infinity\n", done);
  else
    printf("done: train_mse %.6g val_mse %.6g r2_val %.4f\n", train_mse, val_mse, r2_val);
  end
  printf("outputs in %s: model.csv loss_history.csv metrics.json\n", out_dir);
end

try
  run_training();
catch err
  fprintf(stderr, "error: %s\n", err.message);
  exit(1);
end
