% train.m - k-means clustering (Lloyd's algorithm, k-means++ initialisation).
%
% Laptop:  octave-cli train.m            (outputs go to ./output)
% CloudML: parameters arrive as CLOUDML_PARAM_K and CLOUDML_PARAM_INIT_SEED;
%          every output is written to $CLOUDML_OUTPUT_DIR.

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
    error("kmeans: CLOUDML_PARAM_%s=\"%s\" is not a number", upper(name), txt);
  end
end

function D2 = sqdist(X, C)
  % Squared Euclidean distance between every row of X and every row of C.
  D2 = max(sum(X .^ 2, 2) + sum(C .^ 2, 2)' - 2 * X * C', 0);
end

function C = kmeanspp_init(X, k)
  % k-means++: the first centre is a random point, each next one a point drawn
  % with probability proportional to its squared distance to the nearest centre.
  n = rows(X);
  C = zeros(k, columns(X));
  C(1, :) = X(randi(n), :);
  d2 = sqdist(X, C(1, :));
  for j = 2:k
    cdf = cumsum(d2) / sum(d2);
    i = find(cdf >= rand(), 1);
    C(j, :) = X(i, :);
    d2 = min(d2, sqdist(X, C(j, :)));
  end
end

function [C, idx, inertia, iters] = lloyd(X, C, max_iter)
  % Alternates assignment and centroid update until assignments stop changing.
  idx = zeros(rows(X), 1);
  for iters = 1:max_iter
    [d2, new_idx] = min(sqdist(X, C), [], 2);
    if all(new_idx == idx)
      break;
    end
    idx = new_idx;
    for j = 1:rows(C)
      members = (idx == j);
      if any(members)
        C(j, :) = mean(X(members, :), 1);
      else
        % An empty cluster takes the point farthest from its centre.
        [~, far] = max(d2);
        C(j, :) = X(far, :);
        d2(far) = 0;
      end
    end
  end
  [d2, idx] = min(sqdist(X, C), [], 2);
  inertia = sum(d2);
end

function s = silhouette_score(X, idx)
  % Mean silhouette: (b - a) / max(a, b) per point, where a is the mean distance
  % to its own cluster and b the mean distance to the nearest other cluster.
  % Points in single-point clusters score 0.
  D = sqrt(sqdist(X, X));
  k = max(idx);
  n = rows(X);
  M = zeros(n, k);                       % mean distance from each point to each cluster
  counts = accumarray(idx, 1, [k 1])';
  for j = 1:k
    M(:, j) = sum(D(:, idx == j), 2);
  end
  own = sub2ind([n k], (1:n)', idx);
  a = M(own) ./ max(counts(idx)' - 1, 1);  % excludes the point itself
  M = M ./ max(counts, 1);
  M(own) = Inf;
  M(:, counts == 0) = Inf;
  b = min(M, [], 2);
  s_i = (b - a) ./ max(a, b);
  s_i(counts(idx) <= 1) = 0;
  s = mean(s_i);
end

function write_metrics(file, names, values)
  % Writes a flat JSON object; non-finite values are left out.
  fid = fopen(file, "w");
  if fid < 0
    error("kmeans: cannot write %s", file);
  end
  fprintf(fid, "{");
  sep = "";
  for i = 1:numel(names)
    if isfinite(values(i))
      fprintf(fid, "%s\n  \"%s\": %.10g", sep, names{i}, values(i));
      sep = ",";
    end
  end
  fprintf(fid, "\n}\n");
  fclose(fid);
end

function run_clustering()
  % ---- configuration ------------------------------------------------------
  k = round(param("k", 4));
  init_seed = round(param("init_seed", 1));
  max_iter = round(param("max_iter", 100));
  out_dir = env_or("CLOUDML_OUTPUT_DIR", "output");
  if ! exist(out_dir, "dir") && ! mkdir(out_dir)
    error("kmeans: cannot create output directory %s", out_dir);
  end

  % The shipped points.csv sits next to this script; a data source named
  % points.csv staged by CloudML ($CLOUDML_DATA_DIR/points.csv) takes precedence.
  data_file = fullfile(fileparts(mfilename("fullpath")), "points.csv");
  data_dir = getenv("CLOUDML_DATA_DIR");
  if ! isempty(data_dir) && exist(fullfile(data_dir, "points.csv"), "file")
    data_file = fullfile(data_dir, "points.csv");
  end

  printf("task %s of %s, attempt %s\n", env_or("CLOUDML_TASK_INDEX", "0"), ...
         env_or("CLOUDML_TASK_COUNT", "1"), env_or("CLOUDML_ATTEMPT", "1"));
  printf("k %d init_seed %d max_iter %d\n", k, init_seed, max_iter);

  % ---- data -----------------------------------------------------------------
  fid = fopen(data_file, "r");
  if fid < 0
    error("kmeans: cannot open %s", data_file);
  end
  names = strsplit(strtrim(fgetl(fid)), ",");
  fclose(fid);
  X = dlmread(data_file, ",", 1, 0);
  if columns(X) != numel(names)
    error("kmeans: %s: header has %d columns, data %d", data_file, numel(names), columns(X));
  end
  if k < 2 || k >= rows(X) || max_iter < 1
    error("kmeans: need 2 <= k < %d and max_iter >= 1 (got k %d, max_iter %d)", rows(X), k, max_iter);
  end
  printf("data %s: %d points, %d dimensions\n", data_file, rows(X), columns(X));

  % ---- clustering -------------------------------------------------------------
  rand("state", init_seed);
  C0 = kmeanspp_init(X, k);
  [C, idx, inertia, iters] = lloyd(X, C0, max_iter);
  printf("lloyd stopped after %d iterations, inertia %.6g\n", iters, inertia);
  s = silhouette_score(X, idx);
  sizes = accumarray(idx, 1, [k 1]);
  for j = 1:k
    printf("cluster %d: %d points, centre (%s)\n", j, sizes(j), ...
           strjoin(arrayfun(@(v) sprintf("%.3f", v), C(j, :), "UniformOutput", false), ", "));
  end

  % ---- outputs ----------------------------------------------------------------------
  fid = fopen(fullfile(out_dir, "centroids.csv"), "w");
  fprintf(fid, "cluster,%s,size\n", strjoin(names, ","));
  fprintf(fid, [repmat("%.10g,", 1, columns(X) + 1) "%d\n"], [(1:k)', C, sizes]');
  fclose(fid);

  fid = fopen(fullfile(out_dir, "assignments.csv"), "w");
  fprintf(fid, "point,cluster\n");
  fprintf(fid, "%d,%d\n", [(1:rows(X))', idx]');
  fclose(fid);

  write_metrics(fullfile(out_dir, "metrics.json"), ...
                {"silhouette", "inertia", "k", "init_seed", "iterations"}, ...
                [s, inertia, k, init_seed, iters]);

  printf("done: k %d silhouette %.4f inertia %.6g\n", k, s, inertia);
  printf("outputs in %s: centroids.csv assignments.csv metrics.json\n", out_dir);
end

try
  run_clustering();
catch err
  fprintf(stderr, "error: %s\n", err.message);
  exit(1);
end
