"""Training: the configuration (config.py, one definition per option), the loop (loop.py),
its extensions (extensions/), the run folder (run_folder.py) and the recipes."""
from densenet.train.config import TrainConfig
from densenet.train.evaluate import evaluate, time_inference
from densenet.train.extensions import Extension, default_extensions
from densenet.train.extensions.budget import BudgetPlanner
from densenet.train.loop import EpochResult, Loop, Steps, fit, train_one_epoch
from densenet.train.objective import lr_at, smoothed_loss
from densenet.train.recipes import RECIPES
from densenet.train.setup import initialize_from

__all__ = ['TrainConfig', 'RECIPES', 'fit', 'Loop', 'Steps', 'EpochResult', 'train_one_epoch',
           'evaluate', 'time_inference', 'Extension', 'default_extensions', 'BudgetPlanner',
           'lr_at', 'smoothed_loss', 'initialize_from']
